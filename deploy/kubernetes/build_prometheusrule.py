"""Write prometheusrule.yaml: the rule groups of prometheus/alerts.yml as a PrometheusRule.

    python deploy/kubernetes/build_prometheusrule.py           # rewrite prometheusrule.yaml
    python deploy/kubernetes/build_prometheusrule.py --check   # exit 1 when it is out of date

The groups are copied as text, indented under ``spec:``. alerts.yml is itself rendered from the
monitoring mixin (mixin/): change the mixin's settings, render alerts.yml, then run this
script; never edit the generated files. tests/test_deploy.py fails while the two differ.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ALERTS = ROOT / "prometheus" / "alerts.yml"
OUTPUT = HERE / "prometheusrule.yaml"

HEADER = """\
# Generated from prometheus/alerts.yml by deploy/kubernetes/build_prometheusrule.py; alerts.yml
# is rendered from the monitoring mixin (mixin/). docs/alerts.md explains the rules and how to
# set their thresholds, docs/runbook.md what to do when one fires.
#
# For the Prometheus Operator (kube-prometheus-stack): its Prometheus loads PrometheusRules whose
# labels match its ruleSelector; `release: prometheus` is the chart's default for a Helm release
# named "prometheus".
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: jobstore-exporter
  labels:
    app.kubernetes.io/name: jobstore-exporter
    release: prometheus
spec:
"""


def render(alerts_text: str) -> str:
    """The PrometheusRule manifest for the rule file ``alerts_text``."""
    match = re.search(r"^groups:[ \t]*$", alerts_text, flags=re.MULTILINE)
    if match is None:
        raise ValueError("no top-level `groups:` line in the rule file")
    body = alerts_text[match.start() :].rstrip("\n")
    indented = "\n".join(f"  {line}" if line.strip() else "" for line in body.splitlines())
    manifest = HEADER + indented + "\n"
    # The text copy must mean exactly what the rule file means.
    if yaml.safe_load(manifest)["spec"] != yaml.safe_load(alerts_text):
        raise ValueError("the rule file has content besides `groups:`; cannot embed it as text")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether it is current")
    args = parser.parse_args(argv)
    wanted = render(ALERTS.read_text(encoding="utf-8"))
    current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else None
    if args.check:
        if current != wanted:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run {Path(__file__).name}")
            return 1
        return 0
    if current != wanted:
        OUTPUT.write_text(wanted, encoding="utf-8")
        print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
