"""Render the monitoring mixin into the files the repository ships.

    python mixin/render.py           # rewrite prometheus/alerts.yml and grafana/dashboards/*.json
    python mixin/render.py --check   # exit 1 when a committed file differs from the render
    python mixin/render.py --config my-config.libsonnet --out DIR
                                     # your settings: DIR/alerts.yml and DIR/dashboards/*.json

The mixin (``mixin/*.libsonnet``) is the one source of the alert rules and the dashboards; the
committed files are its render with the default settings, so users who do not use jsonnet can
copy them as they are. ``--config`` takes a jsonnet object of settings (``_config`` keys, as
``mixin/tests/custom-config.libsonnet``) and renders both outputs with them.

Rendering needs Debian's ``jsonnet`` binary (``apt-get install jsonnet``) or the Python binding
(``pip install jsonnet``); the dashboards also need grafana-foundation-sdk (``pip install -e
'.[dashboards]'``), which builds them from the mixin's panel specs (``build_dashboards.py``).
After rendering the shipped files, also run ``python deploy/kubernetes/build_prometheusrule.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ALERTS = ROOT / "prometheus" / "alerts.yml"
DASHBOARDS = ROOT / "grafana" / "dashboards"


class ToolMissing(RuntimeError):
    """Something the render needs is not installed (the message says what to install)."""


class JsonnetMissing(ToolMissing):
    """Neither the jsonnet binary nor the Python binding is installed."""


class SdkMissing(ToolMissing):
    """grafana-foundation-sdk, which builds the dashboards, is not installed."""


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


def dashboard_specs(config: str | None = None) -> dict[str, Any]:
    """File name -> the dashboard's panel spec, as the mixin renders it."""
    specs: dict[str, Any] = json.loads(evaluate(HERE / "dashboards.jsonnet", config=config))
    return specs


def builder() -> ModuleType:
    """mixin/build_dashboards.py, loaded by path (this file is run as a script and loaded by
    path too, so mixin/ is not necessarily importable)."""
    try:
        import grafana_foundation_sdk  # noqa: F401
    except ImportError as exc:
        raise SdkMissing(
            "grafana-foundation-sdk is not installed: pip install -e '.[dashboards]'"
        ) from exc
    _load("panel_specs")  # what build_dashboards imports, found in sys.modules
    return _load("build_dashboards")


def _load(name: str) -> ModuleType:
    """A module of mixin/ by path, registered under its own name."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def dashboards(config: str | None = None) -> dict[str, str]:
    """File name -> dashboard JSON: the mixin's specs built with grafana-foundation-sdk."""
    built: dict[str, str] = builder().build(dashboard_specs(config))
    return built


def rendered(config: str | None = None, out: Path | None = None) -> dict[Path, str]:
    """Every file the mixin renders, with its content: the shipped files with the defaults, or
    with ``config`` the same two outputs under ``out``."""
    alerts_path = ALERTS if out is None else out / "alerts.yml"
    boards_dir = DASHBOARDS if out is None else out / "dashboards"
    files = {alerts_path: alerts(config)}
    files.update({boards_dir / name: text for name, text in dashboards(config).items()})
    return files


def config_code(path: Path) -> str:
    """A settings file as jsonnet code for the ``config`` argument: imported by its absolute
    path, so its own imports resolve beside it."""
    return f"import {json.dumps(str(path.resolve()))}"


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale shipped files")
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="a jsonnet object of settings (_config keys)"
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="with --config: where alerts.yml and dashboards/ go"
    )
    args = parser.parse_args(argv)
    if args.config is not None and (args.out is None or args.check):
        parser.error("--config renders into --out DIR (the shipped files keep the defaults)")
    if args.out is not None and args.config is None:
        parser.error("--out goes with --config")
    if args.config is not None and not args.config.is_file():
        parser.error(f"--config: no such file: {args.config}")
    config = None if args.config is None else config_code(args.config)
    try:
        files = rendered(config, args.out)
    except RuntimeError as exc:  # a missing tool, or an error jsonnet reports
        print(f"render.py: {exc}", file=sys.stderr)
        return 2
    stale = []
    for path, text in files.items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {shown(path)}")
    if args.check and stale:
        names = ", ".join(shown(p) for p in stale)
        print(f"out of date: {names}; run python mixin/render.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
