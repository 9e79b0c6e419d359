"""The job store's queries: the SELECT of ids, next run times and digests, and the bytes by id.

The SELECT returns each row's id, next run time, the length of ``job_state`` and a digest of it,
computed by the database (``md5`` on PostgreSQL and MySQL/MariaDB; on SQLite a hash function
registered on the connection), as the driver's own tuples: the job source compares them with
C-level list and set operations. The bytes of the few rows whose digest changed are read by id
afterwards. A ``job_state`` larger than the decoder accepts is never fetched (the SELECT returns
its length instead); SQLite keeps whatever bytes an app wrote in a text column, so there ids are
read as bytes.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from exporter.sidecar.config import StoreConfig
from exporter.sidecar.db import qualified_table
from exporter.sidecar.decode import MAX_JOB_STATE_BYTES
from exporter.sidecar.text import decode_id

Row = tuple[Any, Any, Any, Any]
"""One row of the SELECT as the driver gives it: id, next_run_time, length and change signal."""

SQLITE_HASH = "jobstore_exporter_hash"
"""The digest SQLite computes for the SELECT: Python's own ``hash`` of the bytes, a C builtin
registered on the connection (``create_function``), so no Python bytecode runs per row and the
bytes are not kept between polls. It is 64 bits wide and salted per process, which is all that
is needed: it only ever compares one row with itself at the last poll within one process. A
changed row goes unnoticed with odds of 2**-64 per change (and is read again at its next
change or restart)."""

FETCH_CHUNK = 500
"""Ids per query when the bytes of changed rows are read."""


class JobTable:
    """One store's job table, read-only: the per-poll SELECT (compiled once per dialect) and
    the reads of ``job_state`` by id."""

    def __init__(self, store: StoreConfig) -> None:
        self.table = qualified_table(
            store.jobs_table,
            store.schema,
            [
                sa.Column("id", sa.Unicode(191)),
                sa.Column("next_run_time", sa.Float),
                sa.Column("job_state", sa.LargeBinary),
            ],
        )
        self._queries: dict[str, str] = {}
        self._fingerprints: dict[str, str] = {}

    def select(self, connection: sa.Connection) -> list[Row]:
        """The rows as the driver's plain tuples, fetched whole before any Python work on them
        (on SQLite a reader that lingers can stop the scheduler's writes)."""
        dialect = connection.dialect
        if dialect.name == "sqlite":
            # Registered on every read (cheap): the connection may be new, the engine anyone's.
            driver = connection.connection.driver_connection
            driver.create_function(SQLITE_HASH, 1, hash, deterministic=True)  # type: ignore[union-attr]
        sql = self._queries.get(dialect.name)
        if sql is None:
            sql = self._queries[dialect.name] = str(
                self._query_for(dialect.name).compile(
                    dialect=dialect, compile_kwargs={"literal_binds": True}
                )
            )
        result = connection.exec_driver_sql(sql)
        try:
            # The driver's tuples, not SQLAlchemy rows: equal rows compare equal in C.
            return list(result.cursor.fetchall())
        except dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error) from exc
        finally:
            result.close()

    def fingerprint(self, connection: sa.Connection) -> tuple[Any, ...] | None:
        """The whole table as one row, computed by the server: the number of rows and a digest
        of every row's version (PostgreSQL's ``xmin``; on MySQL/MariaDB the id, exact fire
        time and the SELECT's change signal). It changes whenever the SELECT's rows would; asked
        instead of the SELECT while a store stays the same, it spares the sidecar every row of a
        steady poll. None where there is none (SQLite has its commit count instead)."""
        dialect = connection.dialect
        sql = self._fingerprints.get(dialect.name)
        if sql is None:
            table = dialect.identifier_preparer.format_table(self.table)
            template = _FINGERPRINTS.get(dialect.name)
            if template is None:
                return None
            sql = self._fingerprints[dialect.name] = template.format(
                table=table, limit=MAX_JOB_STATE_BYTES
            )
        return tuple(connection.exec_driver_sql(sql).one())

    def _query_for(self, dialect: str) -> sa.Select[Any]:
        """The SELECT: id, next run time, the length of ``job_state`` and a digest of it.

        A steady poll then moves ids, fire times and digests instead of every row's bytes: the
        bytes are read afterwards, by id, only for the rows that need them. PostgreSQL and
        MySQL/MariaDB compute ``md5(job_state)`` (its 16 bytes); SQLite has no digest of its own,
        so the connection is given one (:data:`SQLITE_HASH`). Rows larger than the decoder accepts
        get no digest (they are judged by their length and never fetched). SQLite keeps
        whatever bytes an app wrote in a text column and its driver fails the whole read on
        invalid UTF-8, so there the id is read as bytes.
        """
        column = self.table.c
        size = sa.func.length(column.job_state)
        job_id: Any = column.id
        fits = size <= MAX_JOB_STATE_BYTES
        if dialect == "sqlite":
            job_id = sa.cast(job_id, sa.LargeBinary)
            digest = getattr(sa.func, SQLITE_HASH)(sa.cast(column.job_state, sa.LargeBinary))
        elif dialect == "postgresql":
            # The md5's 16 bytes, not its 32 hex digits: the rows are kept between polls, and
            # a bytes object of 16 is 32 bytes smaller than a str of 32 (300 KB at 10k jobs).
            digest = sa.func.decode(sa.func.md5(column.job_state), "hex")
        else:
            digest = sa.func.unhex(sa.func.md5(column.job_state))
        digest = sa.case((fits, digest), else_=sa.null())
        # The length only where it matters (a row too large, or NULL): the rows are kept until
        # the next poll, and None costs nothing per row.
        length = sa.case((fits, sa.null()), else_=size)
        return sa.select(job_id, column.next_run_time, length, digest)

    def states(self, connection: sa.Connection, wanted: list[Any], total: int) -> dict[Any, bytes]:
        """``job_state`` of the ``wanted`` rows (ids as the SELECT gave them), by id; rows gone
        since, or whose state is NULL, are left out. ``total`` is the number of rows the
        SELECT returned: when most of them are wanted, one SELECT reads them all."""
        if not wanted:
            return {}
        if len(wanted) > max(FETCH_CHUNK, total // 4):
            return self._all_states(connection, wanted)  # a first poll: one SELECT, not many
        if connection.dialect.name == "sqlite":
            return self._sqlite_states(connection, wanted)
        states: dict[Any, bytes] = {}
        column = self.table.c
        for start in range(0, len(wanted), FETCH_CHUNK):
            chunk = wanted[start : start + FETCH_CHUNK]
            query = sa.select(column.id, column.job_state).where(column.id.in_(chunk))
            for raw_id, state in connection.execute(query):
                if state is not None:
                    states[raw_id] = bytes(state)  # never keep a driver's view
        return states

    def _all_states(self, connection: sa.Connection, wanted: list[Any]) -> dict[Any, bytes]:
        """The bytes of every row (up to the size the decoder accepts), kept for those wanted:
        fetched whole before any Python work on them."""
        column = self.table.c
        size = sa.func.length(column.job_state)
        job_id: Any = column.id
        state: Any = column.job_state
        if connection.dialect.name == "sqlite":
            job_id, state = sa.cast(job_id, sa.LargeBinary), sa.cast(state, sa.LargeBinary)
        query = sa.select(job_id, sa.case((size <= MAX_JOB_STATE_BYTES, state), else_=sa.null()))
        rows = connection.execute(query).all()
        keep = set(wanted)
        return {raw: bytes(value) for raw, value in rows if value is not None and raw in keep}

    def _sqlite_states(self, connection: sa.Connection, wanted: list[Any]) -> dict[Any, bytes]:
        """The bytes by id on SQLite, where ids are read as bytes: looked up by their text (the
        primary key's index), and those stored otherwise (as a BLOB) by their bytes."""
        column = self.table.c
        blob_id = sa.cast(column.id, sa.LargeBinary)
        state = sa.cast(column.job_state, sa.LargeBinary)
        texts = {}
        for raw_id in wanted:
            text, valid = decode_id(raw_id)
            if valid:  # an invalid id makes its row undecodable: its bytes are never needed
                texts[text] = raw_id
        states: dict[Any, bytes] = {}
        names = list(texts)
        for start in range(0, len(names), FETCH_CHUNK):
            query = sa.select(blob_id, state).where(
                column.id.in_(names[start : start + FETCH_CHUNK])
            )
            states.update(
                (raw, bytes(value)) for raw, value in connection.execute(query) if value is not None
            )
        missing = [raw_id for raw_id in texts.values() if raw_id not in states]
        for start in range(0, len(missing), FETCH_CHUNK):
            query = sa.select(blob_id, state).where(
                blob_id.in_(missing[start : start + FETCH_CHUNK])
            )
            states.update(
                (raw, bytes(value)) for raw, value in connection.execute(query) if value is not None
            )
        return states


_FINGERPRINTS = {
    # PostgreSQL writes every UPDATE as a new row version stamped with its transaction (xmin):
    # ids and xmins change whenever a row does, and the server need not read job_state at all.
    # A 64-bit hash per row, summed (no sort: a string_agg in id order took 112 ms at 100k
    # rows, this 26 to 44 ms); a change goes unseen with odds of 2**-64. hashtextextended is
    # PostgreSQL 11+. (A VACUUM that freezes rows may change what xmin shows: one more read.)
    "postgresql": (
        "SELECT count(*), sum(hashtextextended(id || ':' || xmin::text, 0)) FROM {table}"
    ),
    # Each row's md5, XORed in two 64-bit halves (rows are distinct by their id, so none cancels
    # another; group_concat would be cut at its length cap). A double's text is its shortest
    # exact form.
    "mysql": (
        "SELECT COUNT(*), "
        "BIT_XOR(CAST(CONV(SUBSTRING(h, 1, 16), 16, 10) AS UNSIGNED)), "
        "BIT_XOR(CAST(CONV(SUBSTRING(h, 17, 16), 16, 10) AS UNSIGNED)) "
        "FROM (SELECT MD5(CONCAT_WS(':', LENGTH(id), id, COALESCE(CONCAT(next_run_time), '-'), "
        "COALESCE(CASE WHEN LENGTH(job_state) <= {limit} THEN MD5(job_state) "
        "ELSE CONCAT('L', LENGTH(job_state)) END, '-'))) AS h FROM {table}) AS digests"
    ),
}
_FINGERPRINTS["mariadb"] = _FINGERPRINTS["mysql"]
