"""Kit test isolation: a recorder a test leaves open is closed (and named) after it."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from exporter.kit import scheduler as kit_scheduler


@pytest.fixture(autouse=True)
def close_leftover_recorders(request: pytest.FixtureRequest) -> Iterator[None]:
    before = set(kit_scheduler._recorders.values())
    yield
    leftovers = [r for r in list(kit_scheduler._recorders.values()) if r not in before]
    for recorder in leftovers:
        scheduler = recorder.scheduler
        if scheduler.running and not isinstance(scheduler, AsyncIOScheduler):
            warnings.warn(f"{request.node.name} left its scheduler running", stacklevel=1)
            scheduler.shutdown(wait=False)
        recorder.close(timeout=1.0)
