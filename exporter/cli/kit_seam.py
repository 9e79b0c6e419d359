"""The one seam where commands of the sidecar's command line run scheduler-side kit code.

The sidecar (the exporter's sources, snapshot, renderers and server) never imports
``exporter.kit``, and the kit never imports the sidecar. Two commands must run kit code all the
same: ``backup run|list|verify`` take, list and verify backups exactly as the scheduled job does,
and ``demo`` runs a real scheduler beside the exporter. They import what they need from here, so
the crossing is in one place that a test holds (``tests/test_architecture.py``).
"""

from __future__ import annotations

from exporter.kit import create_scheduler
from exporter.kit.backup import (
    BackupError,
    MissingTool,
    UnusableBackup,
    backup_database,
    list_backups,
    verify_backup,
)

__all__ = [
    "BackupError",
    "MissingTool",
    "UnusableBackup",
    "backup_database",
    "create_scheduler",
    "list_backups",
    "verify_backup",
]
