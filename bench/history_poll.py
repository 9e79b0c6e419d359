"""History poll cost as the table grows: it must stay flat.

Builds `job_execution` tables of increasing size (SQLite always, PostgreSQL when reachable),
bootstraps a HistorySource on each, then measures steady polls that find 100 new finished rows
and 20 open runs, against a floor measured in the same run: the raw SELECT of the same 100 rows
by id. Prints a table and writes bench/results/history_poll.json.

    python -m bench.history_poll [--sizes 100000,1000000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from exporter.shared.tables import history_table
from exporter.sidecar.config import load_config
from exporter.sidecar.db import reader_engine
from exporter.sidecar.sources.history import HistorySource

RESULTS = Path(__file__).parent / "results"
T0 = datetime(2026, 1, 1)


def fill(engine: sa.Engine, table: sa.Table, rows: int, jobs: int = 200) -> None:
    """Bulk-insert finished runs spread over `jobs` job ids, in chunks."""
    chunk = 20_000
    with engine.begin() as conn:
        for start in range(0, rows, chunk):
            batch = []
            for i in range(start, min(rows, start + chunk)):
                begin = T0 + timedelta(seconds=i)
                batch.append(
                    {
                        "job_id": f"job_{i % jobs}",
                        "scheduled_run_time": begin,
                        "started_at": begin,
                        "finished_at": begin + timedelta(milliseconds=250),
                        "duration_ms": 250.0,
                        "status": "failed" if i % 17 == 0 else "success",
                    }
                )
            conn.execute(table.insert(), batch)


def add_runs(engine: sa.Engine, table: sa.Table, count: int, base: int) -> list[int]:
    moment = T0 + timedelta(days=400, seconds=base)
    with engine.begin() as conn:
        conn.execute(
            table.insert(),
            [
                {"job_id": f"job_{i % 50}", "status": "success", "started_at": moment,
                 "finished_at": moment, "duration_ms": 5.0}
                for i in range(count)
            ],
        )  # fmt: skip
        last = conn.execute(sa.select(sa.func.max(table.c.id))).scalar_one()
    return list(range(int(last) - count + 1, int(last) + 1))


def measure(url: str, size: int, rounds: int = 15) -> dict[str, Any]:
    writer = sa.create_engine(url)
    table = history_table(sa.MetaData())
    table.metadata.drop_all(writer)
    table.metadata.create_all(writer)
    started = time.perf_counter()
    fill(writer, table, size)
    fill_seconds = time.perf_counter() - started
    # 20 runs left open, re-checked on every poll.
    with writer.begin() as conn:
        conn.execute(
            table.insert(),
            [{"job_id": f"open_{i}", "status": "running", "started_at": T0} for i in range(20)],
        )
    store = load_config(db_url=url).stores[0]
    reader = reader_engine(store.url, 30)
    source = HistorySource(store)
    with reader.connect() as conn:
        started = time.perf_counter()
        source.read(conn)
        bootstrap = time.perf_counter() - started
    polls, floors = [], []
    floor_query = sa.select(*table.c).where(table.c.id.in_(sa.bindparam("ids", expanding=True)))
    for round_ in range(rounds):
        ids = add_runs(writer, table, 100, round_ * 100)
        with reader.connect() as conn:
            started = time.perf_counter()
            conn.execute(floor_query, {"ids": ids}).all()
            floors.append(time.perf_counter() - started)
        with reader.connect() as conn:
            started = time.perf_counter()
            source.read(conn)
            polls.append(time.perf_counter() - started)
    reader.dispose()
    writer.dispose()
    poll, floor = statistics.median(polls), statistics.median(floors)
    return {
        "rows": size,
        "fill_seconds": round(fill_seconds, 2),
        "bootstrap_ms": round(bootstrap * 1000, 2),
        "poll_ms": round(poll * 1000, 3),
        "floor_ms": round(floor * 1000, 3),
        "ratio": round(poll / floor, 2),
    }


def run(sizes: list[int], postgres: str | None) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            url = f"sqlite:///{tmp}/history_{size}.sqlite"
            results.append({"backend": "sqlite", **measure(url, size)})
            print_row(results[-1])
    if postgres:
        try:
            url = scratch_database(postgres)
        except Exception as exc:  # noqa: BLE001
            print(f"postgresql skipped: {str(exc).splitlines()[0]}")
        else:
            for size in sizes:
                results.append({"backend": "postgresql", **measure(url, size)})
                print_row(results[-1])
    return results


def scratch_database(admin_url: str, name: str = "jse_bench") -> str:
    """A database of the benchmark's own, recreated, so shared databases are never touched."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def print_row(row: dict[str, Any]) -> None:
    print(
        f"{row['backend']:<11} {row['rows']:>10,} rows  bootstrap {row['bootstrap_ms']:>9.1f} ms"
        f"  poll {row['poll_ms']:>7.2f} ms  floor {row['floor_ms']:>6.2f} ms"
        f"  ratio {row['ratio']:>5.2f}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1/test")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print("history poll: 100 new finished rows + 20 open runs per poll (median of 15)")
    results = run(sizes, args.postgres or None)
    report = {"benchmark": "history_poll", "results": results}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "history_poll.json").write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
