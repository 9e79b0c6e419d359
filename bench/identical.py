"""Byte-identity check for refactors: the ``/metrics`` bodies of fixed stores at a frozen clock.

A refactor that claims "no behaviour change" proves it here: run this on the code before the
change (it writes the bodies into a directory), then with ``--compare`` on the code after it.

1. The store: ``bench.stores.build_store`` (a real scheduler's jobs, replicated; a heartbeat
   row and one finished run for one job in ten) on SQLite, written once into the directory
   (``store.sqlite``) together with the moment the clock is frozen at (``moment``). A compare
   run works on a copy of that file, so both runs read the very same rows. When PostgreSQL is
   reachable, the same rows are copied into a scratch database of its own (``jse_identical``).
2. Each backend is polled in process by the sidecar's own pollers and rendered by its own body
   cache (``Sidecar(config)``, as ``serve`` builds them), with ``time.time``,
   ``time.monotonic`` and ``time.perf_counter`` frozen (so "now", poll durations and walk
   budgets are the same in every run), ``random`` seeded (APScheduler's jitter) and
   ``PYTHONHASHSEED=0`` (set by re-executing).
3. Round 1 is the first poll. Round 2 follows a change: 1% of the job rows rewritten, a few
   new finished runs, the clock 10 s later; it exercises the incremental re-encoding.
4. Per backend and round, four files: text 0.0.4 and OpenMetrics, each as served plain and as
   the gzip body decompressed. ``process_*`` sample values (this process's memory, CPU and
   file descriptors) are written as ``<varies>``; everything else is compared byte for byte.

    python -m bench.identical DIR [--jobs 3000]     # write the bodies (and the store) into DIR
    python -m bench.identical --compare DIR         # exit 1 naming the first differing line
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ACCEPTS = {
    "text": "text/plain;version=0.0.4",
    "openmetrics": (
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
        "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    ),
}
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1/postgres"
PG_DATABASE = "jse_identical"
VARYING = re.compile(rb"^(process_\S+) \S+$", re.MULTILINE)


class _Clock:
    """Stand-ins for ``time.time``, ``time.monotonic`` and ``time.perf_counter``: the real ones
    until ``frozen`` holds a moment, then that moment (and a fixed reading for the other two).

    They replace the ``time`` module's functions when this module is imported, before anything
    of the exporter is: a default argument such as ``clock=time.time`` then holds the stand-in.
    """

    frozen: float | None = None
    real = (time.time, time.monotonic, time.perf_counter)

    @classmethod
    def install(cls) -> None:
        wall, mono, perf = cls.real
        time.time = lambda: wall() if cls.frozen is None else cls.frozen
        time.monotonic = lambda: mono() if cls.frozen is None else 1_000.0
        time.perf_counter = lambda: perf() if cls.frozen is None else 1_000.0


_Clock.install()


@contextmanager
def frozen_clock(wall: float) -> Iterator[None]:
    """The clock at ``wall`` (``monotonic`` and ``perf_counter`` standing still), ``random``
    seeded (APScheduler's jitter)."""
    random.seed(0)
    _Clock.frozen = wall
    try:
        yield
    finally:
        _Clock.frozen = None


def _masked(body: bytes) -> bytes:
    return VARYING.sub(rb"\1 <varies>", body)


def _copy_rows(source: sa.Engine, target: sa.Engine) -> None:
    """The SQLite store's rows, as they are, into ``target`` (its tables created afresh)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    from exporter.shared.tables import heartbeat_table, history_table

    kit = sa.MetaData()
    tables = [
        SQLAlchemyJobStore(engine=target).jobs_t,
        history_table(kit),
        heartbeat_table(kit),
    ]
    for table in tables:
        table.create(target, checkfirst=True)
        with source.connect() as conn:
            rows = [dict(row._mapping) for row in conn.execute(sa.select(table))]
        with target.begin() as conn:
            conn.execute(table.delete())
            if rows:
                conn.execute(table.insert(), rows)


def _add_runs(url: str, moment: datetime) -> None:
    """Five finished runs (one failed) of the first jobs, after round 1's poll."""
    from exporter.shared.tables import history_table

    engine = sa.create_engine(url)
    table = history_table(sa.MetaData())
    try:
        with engine.connect() as conn:
            ids = [
                r[0] for r in conn.execute(sa.text("SELECT id FROM apscheduler_jobs ORDER BY id"))
            ]
            last = conn.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0
        started = moment.replace(tzinfo=None)
        with engine.begin() as conn:
            conn.execute(
                table.insert(),
                [
                    {"id": last + 1 + n, "job_id": job_id,
                     "status": "failed" if n == 2 else "success",
                     "scheduled_run_time": started, "started_at": started,
                     "finished_at": started + timedelta(seconds=n + 1),
                     "duration_ms": 1000.0 * (n + 1)}
                    for n, job_id in enumerate(ids[:5])
                ],
            )  # fmt: skip
    finally:
        engine.dispose()


def _render_all(sidecar: Any) -> dict[str, bytes]:
    async def render() -> dict[str, bytes]:
        await sidecar.bodies.refresh()
        bodies: dict[str, bytes] = {}
        for name, accept in ACCEPTS.items():
            body = await sidecar.bodies.get(accept)
            bodies[f"{name}.txt"] = _masked(body.plain)
            bodies[f"{name}.gzip.txt"] = _masked(gzip.decompress(body.gzipped))
        return bodies

    return asyncio.run(render())


def bodies_of(url: str, moment: float, change: Callable[[], None]) -> dict[str, bytes]:
    """Round 1 and round 2 bodies of the store at ``url``, polled and rendered in process."""
    from exporter.sidecar.config import load_config
    from exporter.sidecar.serving.server import Sidecar

    out: dict[str, bytes] = {}
    with frozen_clock(moment):
        sidecar = Sidecar(load_config(db_url=url))
    try:
        for round_, now in ((1, moment), (2, moment + 10)):
            if round_ == 2:
                change()
            with frozen_clock(now):
                for poller in sidecar.pollers:
                    poller.poll()
                    if not poller.snapshot.up:
                        raise SystemExit(f"{url}: poll failed: {poller.snapshot.sources}")
                for name, body in _render_all(sidecar).items():
                    out[f"round{round_}.{name}"] = body
    finally:
        for poller in sidecar.pollers:
            poller.close()
    return out


def _postgres_url() -> str | None:
    from bench.history_poll import scratch_database

    try:
        return scratch_database(PG_ADMIN, PG_DATABASE)
    except Exception as exc:  # noqa: BLE001 - unreachable: said, and skipped
        print(f"postgresql skipped: {str(exc).splitlines()[0]}", file=sys.stderr)
        return None


def render_dir(saved: Path, out: Path) -> list[str]:
    """Write every body of the store saved in ``saved`` into ``out``; the files written."""
    from bench.stores import change_states

    moment = float((saved / "moment").read_text())
    stamp = datetime.fromtimestamp(moment, UTC)
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store.sqlite"
        shutil.copyfile(saved / "store.sqlite", store)
        sqlite_url = f"sqlite:///{store}"
        backends = {"sqlite": sqlite_url}
        pg_url = _postgres_url()
        if pg_url is not None:
            source, target = sa.create_engine(sqlite_url), sa.create_engine(pg_url)
            try:
                _copy_rows(source, target)
            finally:
                source.dispose()
                target.dispose()
            backends["postgresql"] = pg_url
        for backend, url in backends.items():

            def change(url: str = url) -> None:
                change_states(url, 0.01, round_=1)
                _add_runs(url, stamp)

            for name, body in bodies_of(url, moment, change).items():
                (out / f"{backend}.{name}").write_bytes(body)
                written.append(f"{backend}.{name}")
        if pg_url is not None:
            from bench.__main__ import drop_database

            drop_database(PG_ADMIN, PG_DATABASE)
    return written


def first_difference(before: Path, after: Path, names: list[str]) -> str | None:
    """The first differing line of the first file that differs, in words; None if all equal."""
    for name in names:
        old, new = before / name, after / name
        if not old.exists():
            print(f"{name}: not in {before} (not compared)", file=sys.stderr)
            continue
        a, b = old.read_bytes().splitlines(), new.read_bytes().splitlines()
        for n, (x, y) in enumerate(zip(a, b, strict=False), start=1):
            if x != y:
                return f"{name} line {n}:\n  before: {x!r}\n  after:  {y!r}"
        if len(a) != len(b):
            n = min(len(a), len(b)) + 1
            extra = a[n - 1] if len(a) > len(b) else b[n - 1]
            side = "before" if len(a) > len(b) else "after"
            return f"{name} line {n}: only {side} has it: {extra!r}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.identical", description=__doc__)
    parser.add_argument("dir", nargs="?", type=Path, help="where to write the bodies and store")
    parser.add_argument("--compare", type=Path, help="a directory written earlier to compare")
    parser.add_argument("--jobs", type=int, default=3000)
    args = parser.parse_args(argv)
    if os.environ.get("PYTHONHASHSEED") != "0":  # set and string orders as in every run
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, "-m", "bench.identical", *sys.argv[1:]])
    if args.compare is not None:
        with tempfile.TemporaryDirectory() as tmp:
            names = render_dir(args.compare, Path(tmp))
            difference = first_difference(args.compare, Path(tmp), names)
        if difference is not None:
            print(f"differs: {difference}")
            return 1
        print(f"identical: {len(names)} bodies as in {args.compare}")
        return 0
    if args.dir is None:
        parser.error("give DIR to write, or --compare DIR")
    args.dir.mkdir(parents=True, exist_ok=True)
    if not (args.dir / "store.sqlite").exists():
        from bench.stores import build_store

        build_store(f"sqlite:///{args.dir / 'store.sqlite'}", args.jobs)
        (args.dir / "moment").write_text(f"{math.floor(time.time()) + 30}\n")
    names = render_dir(args.dir, args.dir)
    print(f"wrote {len(names)} bodies into {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
