"""A time budget for the fire-time walk of one job.

Working out a trigger's fire times is a walk: steps of cron arithmetic, rounds in which the
parts of an ``AndTrigger`` look for a common time, one branch per part of an ``OrTrigger``.
Every loop is bounded, but a row within the decoder's bounds can still multiply them (hundreds
of parts that never agree) into seconds of work, and a budget checked only between jobs let one
such row hold the first poll, and ``/readyz``, for minutes. So the walk checks a deadline as it
goes (:func:`charge` at every step) and the caller gives up on that job alone.

The deadline lives in a context variable: polls run in worker threads, each with its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

__all__ = ["ROW_BUDGET", "WalkBudgetExceeded", "charge", "walk_budget"]

ROW_BUDGET: Final = 0.5
"""Seconds the fire-time walk of one job may take before it is given up."""

_deadline: ContextVar[float | None] = ContextVar("_deadline", default=None)


class WalkBudgetExceeded(Exception):
    """The walk ran past its deadline. Not an ArithmeticError or ValueError on purpose: the
    walk's callers treat those as "no answer", this one as "too dear"."""


@contextmanager
def walk_budget(seconds: float) -> Iterator[None]:
    """Run the block with a walk deadline ``seconds`` from now."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def charge() -> None:
    """One step of a walk: raise :class:`WalkBudgetExceeded` once the deadline has passed.
    Without a budget in force (a single ``check`` or a test), it costs nothing."""
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline:
        raise WalkBudgetExceeded
