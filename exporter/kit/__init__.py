"""The scheduler-side kit: history recording and heartbeats for APScheduler 3 apps.

Apps import it (``from exporter import create_scheduler, instrument``); it never imports the
sidecar, only ``exporter.shared.tables`` for the table layouts both halves share.
"""

from exporter.kit.backup import BackupError, register_backup_job
from exporter.kit.recorder import Recorder
from exporter.kit.scheduler import create_scheduler, get_recorder, instrument
from exporter.kit.writer import WriterStats

__all__ = [
    "BackupError",
    "Recorder",
    "WriterStats",
    "create_scheduler",
    "get_recorder",
    "instrument",
    "register_backup_job",
]
