"""The `jobstore-exporter` command line: the only code that may use both halves (the kit only
through ``kit_seam``).

``exporter.cli:main`` is the console script's entry point. It is looked up lazily, so that
importing a module of this package (the demo's jobs, inside an app's scheduler) does not load
every command and the sidecar with it.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "main":
        from exporter.cli.app import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
