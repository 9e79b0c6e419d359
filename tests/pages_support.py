"""Helpers for the page tests: runs written as the kit and Aegis write them, big stores fast,
a running app, and a parser that sees a page as a browser's parser would."""

from __future__ import annotations

import asyncio
import json
import pickle
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from yarl import URL

from exporter.shared.tables import history_table
from exporter.sidecar.config import Config
from exporter.sidecar.poller import StorePoller
from exporter.sidecar.serving.server import Sidecar, create_app


def naive(moment: float) -> datetime:
    """Unix seconds as naive UTC, as the history table stores them."""
    return datetime.fromtimestamp(moment, UTC).replace(tzinfo=None)


class Runs:
    """Writes rows into a real ``job_execution`` table, times relative to now."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)
        self.table = history_table(sa.MetaData())
        self.table.metadata.create_all(self.engine)
        self.now = time.time()

    def add(self, job_id: str, status: str, ago: float, seconds: float | None = None,
            error: str | None = None, late: float = 0.0) -> int:  # fmt: skip
        """A run scheduled ``ago`` seconds ago that started ``late`` seconds after that."""
        scheduled = self.now - ago
        started = None if status == "missed" else scheduled + late
        finished = (
            started + seconds
            if started is not None and seconds is not None and status != "running"
            else None
        )
        values = {
            "job_id": job_id,
            "job_name": job_id,
            "scheduled_run_time": naive(scheduled),
            "started_at": naive(started) if started is not None else None,
            "finished_at": naive(finished) if finished is not None else None,
            "duration_ms": seconds * 1000 if finished is not None and seconds is not None else None,
            "status": status,
            "error_message": error,
        }
        with self.engine.begin() as conn:
            return int(conn.execute(self.table.insert().values(**values)).inserted_primary_key[0])

    def bulk(self, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.table.insert(), rows)

    def close(self) -> None:
        self.engine.dispose()


def many_jobs(url: str, count: int, prefix: str = "job") -> None:
    """``count`` interval jobs: three added by a real scheduler, the rest copies of their
    pickled state with new ids (one ``add_job`` per row would take minutes)."""
    store = SQLAlchemyJobStore(url=url)
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
    scheduler.start(paused=True)
    try:
        for minutes in (5, 15, 60):
            scheduler.add_job(
                "sample_jobs:noop",
                IntervalTrigger(minutes=minutes, timezone="UTC"),
                id=f"{prefix}_template_{minutes}",
                name=f"Every {minutes} minutes",
            )
        templates = store.get_all_jobs()
    finally:
        scheduler.shutdown(wait=False)
    rows = []
    for n in range(count - len(templates)):
        state = templates[n % len(templates)].__getstate__()
        state["id"] = f"{prefix}_{n:05d}"
        state["name"] = f"Sync tenant {n:05d}"
        rows.append(
            {
                "id": state["id"],
                "next_run_time": templates[n % len(templates)].next_run_time.timestamp(),
                "job_state": pickle.dumps(state, pickle.HIGHEST_PROTOCOL),
            }
        )
    with store.engine.begin() as conn:
        conn.execute(store.jobs_t.insert(), rows)
    store.engine.dispose()


@dataclass
class App:
    server: TestServer
    sidecar: Sidecar

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def get(self, path: str) -> tuple[int, dict[str, str], str]:
        async with (
            ClientSession() as session,
            session.get(URL(self.url(path), encoded=True)) as resp,
        ):
            return resp.status, dict(resp.headers), await resp.text()

    async def json(self, path: str, status: int = 200) -> Any:
        code, headers, text = await self.get(path)
        assert code == status, text
        assert headers["Content-Type"].startswith("application/json")
        return json.loads(text)


async def serve(config: Config, loader: Callable[[], Config] | None = None) -> AsyncIterator[App]:
    """The real app over ``config`` (reloadable with ``loader``); yields once every store was
    polled."""
    sidecar = Sidecar(config, [StorePoller(store) for store in config.stores], loader=loader)
    server = TestServer(create_app(sidecar), host="127.0.0.1")
    await server.start_server()
    try:
        deadline = time.monotonic() + 30
        while not all(p.snapshot.sources for p in sidecar.pollers):
            assert time.monotonic() < deadline, "the first poll did not finish"
            await asyncio.sleep(0.02)
        yield App(server, sidecar)
    finally:
        await server.close()


def job_path(jobstore: str, job_id: str, api: bool = False) -> str:
    return f"{'/api' if api else ''}/jobs/{quote(jobstore, safe='')}/{quote(job_id, safe='')}"


class Page(HTMLParser):
    """Tags (with attributes) and text of a page, as a browser's parser would see them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def words(self) -> str:
        return " ".join(" ".join(self.text).split())

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [
            a
            for t, a in self.tags
            if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def names(self) -> set[str]:
        return {tag for tag, _ in self.tags}

    def classes(self, tag: str) -> list[str]:
        return [a.get("class") or "" for t, a in self.tags if t == tag]
