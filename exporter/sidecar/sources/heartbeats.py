"""The heartbeat source: which scheduler processes are alive, from the kit's heartbeat table.

The table is optional (apps without the kit have none), so a missing table reads as "no
heartbeats" rather than as an error. Processes not seen for ``forget_after`` seconds are dropped:
a series per long-gone pid would only be noise on dashboards.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from exporter.shared.tables import as_utc
from exporter.sidecar.config import StoreConfig
from exporter.sidecar.snapshot import Heartbeat

_COLUMNS = ("scheduler_id", "host", "pid", "state", "started_at", "last_seen")


class HeartbeatSource:
    def __init__(self, store: StoreConfig, forget_after: float) -> None:
        self.store = store
        self.forget_after = forget_after
        columns: list[sa.ColumnClause[Any]] = [sa.column(name) for name in _COLUMNS]
        self.table = sa.table(store.heartbeat_table, *columns, schema=store.schema)

    def read(self, connection: sa.Connection, now: float) -> tuple[Heartbeat, ...]:
        if not sa.inspect(connection).has_table(self.store.heartbeat_table, self.store.schema):
            return ()
        beats = []
        for scheduler_id, host, pid, state, _started, last_seen in connection.execute(
            sa.select(*(self.table.c[name] for name in _COLUMNS))
        ):
            moment = as_utc(last_seen)
            seen = moment.timestamp() if moment is not None else None
            if seen is None or not isinstance(scheduler_id, str) or now - seen > self.forget_after:
                continue
            beats.append(
                Heartbeat(
                    scheduler=scheduler_id,
                    host=str(host or ""),
                    pid=pid if isinstance(pid, int) else None,
                    state=str(state or "unknown"),
                    last_seen=seen,
                )
            )
        beats.sort(key=lambda beat: beat.scheduler)
        return tuple(beats)
