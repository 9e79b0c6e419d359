"""How the history writer turns buffered rows into statements, and which errors it retries.

A batch is taken from the buffer in arrival order: a run's `running` row becomes an INSERT, its
final row an UPDATE if the `running` row was already written (else an INSERT of the complete
row). The statements of a batch are cut into short executemany calls so that the scheduler's
event loop is never kept waiting for the GIL.
"""

from __future__ import annotations

import itertools
from typing import Any

import sqlalchemy as sa

from exporter.shared.tables import HISTORY_COLUMNS, RECORDER_COLUMNS

# `id` is the database's; the recorder keys its rows by `run_id`.
ROW_COLUMNS = ("run_id", *HISTORY_COLUMNS[1:], *RECORDER_COLUMNS[1:])
"""Every history row the recorder hands to the writer is a dict with exactly these keys."""

INSERT, UPDATE = 0, 1

STATEMENT_ROWS = 100
"""Rows per executemany call. SQLAlchemy prepares a call's parameters in one stretch of Python
that holds the GIL (~2 ms per 100 rows); longer stretches than Python's 5 ms switch interval
would make the scheduler's event loop wait for the GIL. A batch's transaction spans several."""

STATEMENT_PAUSE = 0.0005
"""Seconds the writer sleeps between the statements of a batch. Its I/O waits release the GIL
only for microseconds, too briefly for a waiting thread (the event loop) to take it, which then
waits for the 5 ms switch interval; a real pause hands the GIL over."""

Item = tuple[int, str, dict[str, Any], bool]
"""One row of a batch: INSERT or UPDATE, its run id, the row, and whether it is final."""

Pending = dict[str, tuple[dict[str, Any], bool]]
"""run_id -> (row, final). Dicts keep insertion order; replacing a key keeps its place."""


def update_statement(table: sa.Table) -> sa.Update:
    """The UPDATE of a run's written `running` row to its final row."""
    return (
        table.update()
        .where(table.c.run_id == sa.bindparam("b_run_id"))
        .values({c: sa.bindparam(f"v_{c}") for c in ROW_COLUMNS if c != "run_id"})
    )


def take(pending: Pending, open_runs: set[str], size: int) -> list[Item]:
    """Move up to `size` rows out of `pending` (the caller holds its lock); `open_runs` gains the
    runs whose `running` row is now being written and loses those that got their final row."""
    batch: list[Item] = []
    for run_id in list(itertools.islice(pending, size)):
        row, final = pending.pop(run_id)
        if not final:
            open_runs.add(run_id)
            batch.append((INSERT, run_id, row, final))
        elif run_id in open_runs:
            open_runs.discard(run_id)
            batch.append((UPDATE, run_id, row, final))
        else:
            batch.append((INSERT, run_id, row, final))
    return batch


def statements(
    insert: sa.Insert, update: sa.Update, batch: list[Item]
) -> list[tuple[Any, list[dict[str, Any]]]]:
    """The batch as (statement, rows) calls of at most `STATEMENT_ROWS` rows, inserts first."""
    inserts = [row for kind, _, row, _ in batch if kind == INSERT]
    updates = [
        {"b_run_id": run_id, **{f"v_{k}": v for k, v in row.items() if k != "run_id"}}
        for kind, run_id, row, _ in batch
        if kind == UPDATE
    ]
    return [
        (statement, rows[start : start + STATEMENT_ROWS])
        for statement, rows in ((insert, inserts), (update, updates))
        for start in range(0, len(rows), STATEMENT_ROWS)
    ]


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying as they are: lost connections, locks, timeouts, server restarts."""
    if isinstance(exc, sa.exc.DBAPIError):
        return bool(exc.connection_invalidated) or isinstance(
            exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.InternalError
        )
    return isinstance(exc, sa.exc.TimeoutError | sa.exc.DisconnectionError | OSError)
