"""Render the monitoring mixin into the files the repository ships.

    python mixin/render.py           # rewrite prometheus/alerts.yml and grafana/dashboards/*.json
    python mixin/render.py --check   # exit 1 when a committed file differs from the render

The mixin (``mixin/*.libsonnet``) is the one source of the alert rules and the dashboards; the
committed files are its render with the default settings, so users who do not use jsonnet can
copy them as they are. Rendering needs Debian's ``jsonnet`` binary (``apt-get install
jsonnet``) or the Python binding (``pip install jsonnet``). After rendering, also run
``python deploy/kubernetes/build_prometheusrule.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ALERTS = ROOT / "prometheus" / "alerts.yml"
DASHBOARDS = ROOT / "grafana" / "dashboards"


class JsonnetMissing(RuntimeError):
    """Neither the jsonnet binary nor the Python binding is installed."""


def evaluate(
    path: Path | None = None,
    *,
    snippet: str | None = None,
    string: bool = False,
    config: str | None = None,
) -> str:
    """Evaluate a jsonnet file (or a snippet with mixin/ on the import path), with ``config``
    (jsonnet code) as its ``config`` argument; ``string`` for a file that yields text."""
    try:
        import _jsonnet  # type: ignore[import-not-found]
    except ImportError:
        _jsonnet = None
    tla = {"config": config} if config is not None else {}
    if _jsonnet is not None:
        if snippet is not None:
            text: str = _jsonnet.evaluate_snippet("snippet", snippet, jpathdir=[str(HERE)])
        else:
            text = _jsonnet.evaluate_file(str(path), tla_codes=tla)
        return str(json.loads(text)) if string else text
    binary = shutil.which("jsonnet")
    if binary is None:
        raise JsonnetMissing(
            "jsonnet is not installed: apt-get install jsonnet, or pip install jsonnet"
        )
    command = [binary, *(["-S"] if string else []), "-J", str(HERE)]
    for name, code in tla.items():
        command += ["--tla-code", f"{name}={code}"]
    command += ["-e", snippet] if snippet is not None else [str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"jsonnet failed: {result.stderr.strip()}")
    return result.stdout


def settings() -> dict[str, Any]:
    """The mixin's default settings (config.libsonnet)."""
    loaded: dict[str, Any] = json.loads(evaluate(snippet="(import 'config.libsonnet')._config"))
    return loaded


def alerts(config: str | None = None) -> str:
    """prometheus/alerts.yml as the mixin renders it."""
    return evaluate(HERE / "alerts.jsonnet", string=True, config=config)


def dashboards(config: str | None = None) -> dict[str, str]:
    """File name -> dashboard JSON, as the mixin renders them."""
    boards = json.loads(evaluate(HERE / "dashboards.jsonnet", config=config))
    return {
        name: json.dumps(board, indent=2, ensure_ascii=False) + "\n"
        for name, board in sorted(boards.items())
    }


def rendered() -> dict[Path, str]:
    """Every committed file the mixin renders, with its expected content."""
    files = {ALERTS: alerts()}
    if (HERE / "dashboards.jsonnet").exists():
        files.update({DASHBOARDS / name: text for name, text in dashboards().items()})
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    stale = []
    for path, text in rendered().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if args.check and stale:
        names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
        print(f"out of date: {names}; run python mixin/render.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
