"""Creating the kit's tables: idempotent, safe when several schedulers start at once, and adding
the columns an Aegis-written history table lacks.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable

import sqlalchemy as sa

log = logging.getLogger("exporter.kit")


def ensure_tables(engine: sa.Engine, tables: Iterable[sa.Table], *, attempts: int = 8) -> None:
    """Create the schema, tables and indexes that are missing; safe when processes race.

    Two schedulers starting at once both see "no table" and both issue CREATE; the loser gets
    "already exists" (PostgreSQL may even report a unique violation in its catalog). Every step
    checks first and the whole sequence is retried, so the loser simply finds the winner's table.
    A history table created by Aegis (without our columns) gets the missing nullable columns.
    """
    tables = list(tables)
    for attempt in range(attempts):
        try:
            for schema in sorted({t.schema for t in tables if t.schema}):
                _ensure_schema(engine, schema)
            for table in tables:
                table.create(engine, checkfirst=True)
                _add_missing_columns(engine, table)
                for index in table.indexes:
                    index.create(engine, checkfirst=True)
            return
        except sa.exc.DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.02 * (attempt + 1) + random.random() * 0.05)


def _ensure_schema(engine: sa.Engine, schema: str) -> None:
    if engine.dialect.name == "sqlite":
        return  # a SQLite "schema" is an attached database: the app's business
    with engine.connect() as conn:
        if schema in sa.inspect(conn).get_schema_names():
            return
    with engine.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))


def _add_missing_columns(engine: sa.Engine, table: sa.Table) -> None:
    with engine.connect() as conn:
        present = {c["name"] for c in sa.inspect(conn).get_columns(table.name, schema=table.schema)}
    missing = [c for c in table.columns if c.name not in present]
    if not missing:
        return
    required = [c.name for c in missing if not c.nullable]
    if required:
        raise RuntimeError(
            f"table {table.fullname} exists without required columns {', '.join(required)}"
        )
    preparer = engine.dialect.identifier_preparer
    qualified = preparer.format_table(table)
    with engine.begin() as conn:
        for column in missing:
            spec = sa.schema.CreateColumn(column).compile(dialect=engine.dialect)
            conn.execute(sa.text(f"ALTER TABLE {qualified} ADD COLUMN {spec}"))
            log.info("added column %s to %s", column.name, table.fullname)
    if "run_id" in {c.name for c in missing}:
        # A unique index instead of the UNIQUE constraint CREATE TABLE would have made.
        shadow = sa.Table(
            table.name, sa.MetaData(), sa.Column("run_id", sa.String(36)), schema=table.schema
        )
        sa.Index(f"ux_{table.name}_run_id", shadow.c.run_id, unique=True).create(
            engine, checkfirst=True
        )
