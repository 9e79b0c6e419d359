"""The newest backup files for the status page's backups strip.

Only finished backups are listed (the kit's naming in ``exporter.shared.backup_files``); the kit
gives a backup its final name only after verifying the copy, so a listed file is a verified one. An
empty file is shown as such (a failed dump that left a name behind).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exporter.shared.backup_files import list_backups


def recent_files(directory: Path, count: int) -> list[dict[str, Any]]:
    """The ``count`` newest backups: name, size and modification time (one ``scandir``)."""
    return [
        {"name": item.path.name, "size_bytes": item.size, "mtime": item.mtime}
        for item in list_backups(directory)[:count]
    ]
