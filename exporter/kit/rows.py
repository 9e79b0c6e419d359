"""Pieces of a history row: run ids, error text, tracebacks, naive UTC times.

The recorder, the timed run functions and the process-pool path all build rows from these, so a
run looks the same in the table whichever executor ran it.
"""

from __future__ import annotations

import itertools
import os
import uuid
from datetime import UTC, datetime, timedelta

from exporter.shared.tables import JOB_STATUSES

RUNNING, SUCCESS, FAILED, MISSED, SKIPPED = JOB_STATUSES

ERROR_MESSAGE_CHARS = 2_000


_run_prefix = uuid.uuid4().hex[:24]
_run_counter = itertools.count(1)


def _reseed_run_ids() -> None:  # a forked child must not repeat its parent's ids
    global _run_prefix, _run_counter
    _run_prefix = uuid.uuid4().hex[:24]
    _run_counter = itertools.count(1)


os.register_at_fork(after_in_child=_reseed_run_ids)


def new_run_id() -> str:
    """A unique run key (≤ 36 characters): a random per-process prefix and a counter."""
    return f"{_run_prefix}-{next(_run_counter):x}"


def error_message(exc: BaseException | None) -> str | None:
    """`ExceptionType: message`, shortened to a sane size."""
    if exc is None:
        return None
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the row
        text = "<unprintable exception>"
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return _shorten(message, ERROR_MESSAGE_CHARS)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 15] + " [... shortened]"


def shorten_traceback(text: str | None, limit: int) -> str | None:
    """Keep the end of a long traceback: the innermost frames say where it failed."""
    if not text or len(text) <= limit:
        return text or None
    cut = len(text) - limit
    return f"[... {cut} characters of outer frames dropped]\n" + text[cut:]


_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)


def _naive_utc(moment: datetime | None) -> datetime | None:
    """An aware datetime as naive UTC (exact; cheaper than astimezone + replace)."""
    if moment is None or moment.tzinfo is None:
        return moment
    return _EPOCH + (moment - _EPOCH_UTC)


def _from_timestamp(seconds: float | None) -> datetime | None:
    """Unix seconds as a naive UTC datetime, to the microsecond."""
    if seconds is None:
        return None
    return _EPOCH + timedelta(seconds=seconds)
