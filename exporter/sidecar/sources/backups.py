"""The backup directory source: count and date the backup files in ``backup_dir``.

The directory is the one the scheduler-side backup job writes to, mounted read-only into the
sidecar. Only finished backups count, recognised by the naming of ``exporter.shared.backup_files``
(shared with the backup job): ``<db>_<YYYYmmddTHHMMSSZ>.<sqlite|dump|sql>``; temp files, lock
files and anything else in the directory are ignored.

Only good backups count: those the backup job recorded in its manifest as written and verified
(``exporter.shared.backup_files``). Files named like backups that it did not write, or that are
dated in the future, are counted apart as untrusted: a planted ``app_20991231T000000Z.sqlite`` never
becomes the "newest backup". "Newest" is the good file with the latest UTC time in its name
(the order the kit's rotation uses); its modification time and size are what the metrics
report. Nothing but the small manifest is read: a scrape of a large directory costs one
``scandir``. No database connection is involved, so the files are still counted while the job
store is unreachable.
"""

from __future__ import annotations

from exporter.shared.backup_files import list_backups
from exporter.sidecar.config import StoreConfig
from exporter.sidecar.snapshot import BackupFiles


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
        try:
            found = list_backups(directory, untrusted=True)  # newest first
        except FileNotFoundError:
            raise OSError(
                f"backup_dir {directory} does not exist (is the backup volume mounted?)"
            ) from None
        except NotADirectoryError:
            raise OSError(f"backup_dir {directory} is not a directory") from None
        except PermissionError as exc:
            raise OSError(f"backup_dir {directory} is not readable: {exc.strerror}") from None
        files = [f for f in found if f.trusted]
        newest = files[0] if files else None
        return BackupFiles(
            files=len(files),
            newest_timestamp=newest.mtime if newest else None,
            newest_size=newest.size if newest else None,
            total_size=sum(f.size for f in files),
            untrusted=len(found) - len(files),
        )
