"""Backups taken while a real scheduler writes are consistent, verified, and restore."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from backup_helpers import busy_database, read_restored, restore, wait_for
from support import Database

from exporter.kit.backup import (
    EXTENSIONS,
    backend_kind,
    backup_database,
    backup_prefix,
    verify_backup,
)
from exporter.kit.engine import normalize_url


def test_backups_under_write_load_are_consistent_and_restore(any_db: Database, tmp_path: Path):
    backups = tmp_path / "backups"
    kind = backend_kind(normalize_url(any_db.url))
    with busy_database(any_db) as busy:
        ticks_before, pairs_before = busy.ticks, busy.pairs
        results = [backup_database(any_db.url, backups, keep=10) for _ in range(2)]
        # The scheduler and the writer go on after the backups (nothing left locked).
        wait_for(lambda: busy.ticks > ticks_before + 3 and busy.pairs > pairs_before + 20)

    assert len({r.path for r in results}) == 2
    for result in results:
        assert result.path.parent == backups
        assert result.path.suffix == "." + EXTENSIONS[kind]
        assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
        assert verify_backup(result.path).ok
        with restore(kind, result.path, tmp_path) as url:
            restored = read_restored(url)
        assert restored.job_ids == {"tick", "cleanup_temp"}
        assert restored.job_states_ok
        # One transaction writes one row into each table: a torn copy would differ.
        assert restored.pair_a == restored.pair_b > 0
    # Nothing but finished backups, the lock file and the manifest: no temp files, no -wal/-shm.
    prefix = backup_prefix(normalize_url(any_db.url))
    expected = [r.path.name for r in results] + [
        f".{prefix}.backup-lock",
        f".{prefix}.backups.json",
    ]
    assert sorted(os.listdir(backups)) == sorted(expected)
