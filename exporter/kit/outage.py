"""A database outage as the history writer reports it: one warning when writes start failing,
debug lines while they keep failing, one warning (how long, how many attempts) when they work
again. Never a line per retry, never a URL with its password."""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from exporter.kit.engine import describe_error

log = logging.getLogger("exporter.kit")


class Outage:
    """Failed write attempts: all of them, those since the last success, and since when."""

    def __init__(self, engine: sa.Engine, describe: str) -> None:
        self.engine = engine
        self.describe = describe
        self.errors = 0
        self.in_row = 0
        self.since: float | None = None

    def failed(self, what: str, exc: BaseException, pending: int) -> None:
        """Count one failed attempt at ``what``; ``pending`` rows wait meanwhile."""
        self.errors += 1
        self.in_row += 1
        if self.since is None:
            self.since = time.monotonic()
            log.warning(
                "%s failed on %s, retrying (%d rows buffered): %s",
                what,
                self.describe,
                pending,
                describe_error(exc, self.engine),
            )
        else:
            log.debug("%s failed again: %s", what, describe_error(exc, self.engine))

    def recovered(self) -> None:
        """A write worked: say so once if it ends an outage."""
        if self.since is None:
            return
        took = time.monotonic() - self.since
        attempts = self.in_row
        self.since = None
        self.in_row = 0
        log.warning(
            "history writes to %s work again after %.1f s and %d failed attempts",
            self.describe,
            took,
            attempts,
        )
