"""The backup families of ``/metrics``: the backup job's latest runs and the files in
``backup_dir``.

Declared as data (see ``table.py``); ``families.py`` puts them in body order.
"""

from __future__ import annotations

from collections.abc import Callable

from exporter.sidecar.metrics import samples
from exporter.sidecar.metrics.table import BACKUP_FILES, BACKUP_RUNS, JOB, STORE, Family

_BACKUP_RUN_GAUGES = (
    (
        "apscheduler_backup_last_run_success",
        "last_run_success",
        "1 if the latest backup run succeeded",
        "1 if the latest backup run succeeded",
    ),
    (
        "apscheduler_backup_last_success_timestamp_seconds",
        "last_success",
        "End of the latest successful backup",
        "end of the latest successful backup",
    ),
    (
        "apscheduler_backup_last_failure_timestamp_seconds",
        "last_failure",
        "End of the latest failed backup",
        "end of the latest failed backup",
    ),
    (
        "apscheduler_backup_last_duration_seconds",
        "last_run_duration",
        "Duration of the latest backup run",
        "duration of the latest backup run",
    ),
)

_BACKUP_FILE_GAUGES = (
    (
        "apscheduler_backup_files",
        "files",
        "Backup files present in backup_dir",
        "backup files present in `backup_dir` (the good ones: written and verified by the backup "
        "job, see [backup.md](backup.md#the-manifest-which-files-are-backups))",
    ),
    (
        "apscheduler_backup_newest_file_timestamp_seconds",
        "newest_timestamp",
        "Modification time of the newest backup file",
        "modification time of the newest file there",
    ),
    (
        "apscheduler_backup_newest_file_size_bytes",
        "newest_size",
        "Size of the newest backup file (0 is a failed backup)",
        "its size (0 bytes is a failed backup)",
    ),
    (
        "apscheduler_backup_total_size_bytes",
        "total_size",
        "All backup files in backup_dir together",
        "all backup files together",
    ),
)


def _store_gauges(
    group: str, rows: tuple[tuple[str, str, str, str], ...], stat: Callable[[str], samples.PerStore]
) -> list[Family]:
    """Per-store gauges that read one attribute each (backup run results, backup files)."""
    return [
        Family(name, "gauge", text, STORE, "store", group, doc, per_store=stat(attr))
        for name, attr, text, doc in rows
    ]


BACKUPS: tuple[Family, ...] = (
    Family(
        "apscheduler_backup_info",
        "gauge",
        "Always 1; job_id is the configured backup_job_id of the job store",
        JOB,
        "store",
        BACKUP_RUNS,
        "always 1; `job_id` = the store's `backup_job_id`, so alert rules and panels join on "
        "it instead of assuming `database_backup`",
        per_store=samples.backup_info,
    ),
    *_store_gauges(BACKUP_RUNS, _BACKUP_RUN_GAUGES, samples.backup_stat),
    *_store_gauges(BACKUP_FILES, _BACKUP_FILE_GAUGES, samples.backup_file_stat),
    Family(
        "apscheduler_backup_untrusted_files",
        "gauge",
        "Files named like backups in backup_dir that the backup job did not write "
        "and verify, or dated in the future; never counted as backups",
        STORE,
        "store",
        BACKUP_FILES,
        "files named like backups that the backup job did not write and verify (or changed "
        "since, or dated in the future); never counted as backups",
        per_store=samples.backup_file_stat("untrusted"),
        addition=True,
    ),
)
"""The backup job's runs and the backup files (static part)."""
