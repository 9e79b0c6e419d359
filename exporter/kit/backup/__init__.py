"""The daily database backup: a consistent copy, verified before it gets its final name.

One code path serves the `database_backup` job and `jobstore-exporter backup run`:

1. a consistent copy into a hidden temp file in `backup_dir` (SQLite: the online backup API,
   one read transaction, while the scheduler keeps writing; PostgreSQL: `pg_dump
   --format=custom`; MariaDB/MySQL: `mariadb-dump` or `mysqldump --single-transaction`);
2. fsync of the file, then verification of the copy (SQLite `PRAGMA integrity_check`;
   `pg_restore --list` plus a full read of every data block; the dump's statements are complete
   and it ends with the `-- Dump completed` trailer);
3. an atomic rename to `<db>_<YYYYmmddTHHMMSSZ>.<ext>` (UTC, the time the copy started), fsync
   of the directory;
4. the file is recorded in the directory's manifest (`.<db>.backups.json`: name, size,
   modification time, verification), which is what makes it a *good* backup for rotation, the
   sidecar and `backup list` (see `exporter.shared.backup_files`);
5. only then rotation: the newest `keep` good backups of this database stay, optionally minus
   those older than `max_age_days`; the newest is never deleted. Files the manifest does not list
   (foreign, planted, dated in the future) never count among those kept and are never touched;
   each run logs them.

A failure at any step deletes the temp file and raises :class:`BackupError`, one line that names
the fix, so the history recorder stores a `failed` run with that reason.

Passwords never reach the job store: the job's kwargs hold the URL without its password and say
where the password comes from at run time (an environment variable, a file, or this process's
memory, filled again by `register_backup_job()` at every start). Child processes get it through
their environment (`PGPASSWORD`, `MYSQL_PWD`), never through argv.
"""

from exporter.kit.backup.job import (
    _public_url,
    describe_schedule,
    install_backup_job,
    register_backup_job,
    run_backup,
)
from exporter.kit.backup.model import (
    BACKUP_DIR_ENV,
    JOB_FUNC,
    JOB_ID,
    JOB_NAME,
    STALE_TEMP_AFTER,
    BackupError,
    BackupResult,
    BackupSetting,
    MissingTool,
    UnusableBackup,
    Verification,
    backend_kind,
    backup_prefix,
)
from exporter.kit.backup.take import backup_database
from exporter.kit.backup.verify import detect_kind, verify_backup
from exporter.kit.rotation import rotate, rotation_victims
from exporter.shared.backup_files import EXTENSIONS, BackupFile, list_backups

__all__ = [
    "BACKUP_DIR_ENV",
    "EXTENSIONS",
    "JOB_FUNC",
    "JOB_ID",
    "JOB_NAME",
    "STALE_TEMP_AFTER",
    "BackupError",
    "BackupFile",
    "BackupResult",
    "BackupSetting",
    "MissingTool",
    "UnusableBackup",
    "Verification",
    "_public_url",
    "backend_kind",
    "backup_database",
    "backup_prefix",
    "describe_schedule",
    "detect_kind",
    "install_backup_job",
    "list_backups",
    "register_backup_job",
    "rotate",
    "rotation_victims",
    "run_backup",
    "verify_backup",
]
