"""The backup directory source: count and date the backup files in ``backup_dir``.

The directory is the one the scheduler-side backup job writes to, mounted read-only into the
sidecar. Only finished backups count, recognised by the kit's naming pattern
``<db>_<YYYYmmddTHHMMSSZ>.<sqlite|dump|sql>``; the kit's temp files (hidden, ``.tmp``), its lock
files and anything else in the directory are ignored. The pattern is repeated here rather than
imported because the sidecar never imports the kit; a test keeps the two in step.

"Newest" is the file with the latest UTC time in its name (the order the kit's rotation uses);
its modification time and size are what the metrics report. Nothing is opened or read: a scrape
of a large directory costs one ``scandir``. No database connection is involved, so the files are
still counted while the job store is unreachable.
"""

from __future__ import annotations

import os
import re

from exporter.config import StoreConfig
from exporter.snapshot import BackupFiles

BACKUP_NAME = re.compile(
    r"^(?P<prefix>[A-Za-z0-9][A-Za-z0-9._-]*)_(?P<stamp>\d{8}T\d{6}Z)\.(?P<ext>sqlite|dump|sql)$"
)
"""Same as ``exporter.kit.backup.BACKUP_NAME``."""


class BackupDirSource:
    def __init__(self, store: StoreConfig) -> None:
        self.store = store

    def read(self, now: float) -> BackupFiles | None:
        """The four figures of the directory; None when no ``backup_dir`` is configured.

        Raises OSError (one line naming the directory) when it is missing or unreadable.
        """
        directory = self.store.backup_dir
        if directory is None:
            return None
        count = total = 0
        newest: tuple[str, float, int] | None = None  # (stamp, mtime, size)
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    match = BACKUP_NAME.match(entry.name)
                    if match is None:
                        continue
                    try:
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue  # rotated away between scandir and stat
                    count += 1
                    total += info.st_size
                    key = (match["stamp"], info.st_mtime, info.st_size)
                    if newest is None or key[:2] > newest[:2]:
                        newest = key
        except FileNotFoundError:
            raise OSError(
                f"backup_dir {directory} does not exist (is the backup volume mounted?)"
            ) from None
        except NotADirectoryError:
            raise OSError(f"backup_dir {directory} is not a directory") from None
        except PermissionError as exc:
            raise OSError(f"backup_dir {directory} is not readable: {exc.strerror}") from None
        return BackupFiles(
            files=count,
            newest_timestamp=newest[1] if newest else None,
            newest_size=newest[2] if newest else None,
            total_size=total,
        )
