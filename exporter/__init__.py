"""jobstore-exporter: Prometheus metrics for APScheduler apps with a database job store.

The package holds two halves that never import each other: the sidecar (``exporter.*``) that
reads the job store and serves metrics, and the scheduler-side kit (``exporter.kit``) that apps
import. The kit's public names are re-exported here lazily so ``import exporter`` stays cheap for
the sidecar and the kit stays importable without the sidecar's web stack.
"""

from __future__ import annotations

from typing import Any

from exporter.shared.version import __version__

__all__ = ["__version__", "create_scheduler", "instrument", "register_backup_job"]


def __getattr__(name: str) -> Any:
    if name in {"create_scheduler", "instrument", "register_backup_job"}:
        from exporter import kit

        return getattr(kit, name)
    raise AttributeError(f"module 'exporter' has no attribute {name!r}")
