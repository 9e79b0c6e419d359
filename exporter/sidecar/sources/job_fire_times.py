"""The job source's fire times: each job's latest fire time, worked out when it falls due.

The latest fire time a trigger implies only changes when the clock passes the trigger's next
fire time, so it is worked out about once per run of the trigger, not on every poll: entries
wait on a heap ordered by the moment their answer stops holding, and a poll pops only those
due. Answers are shared by trigger (stores hold many jobs with the same schedule, and cron
arithmetic is the dearest part of a cold poll). Each job's walk has a budget of its own
(:data:`~exporter.sidecar.schedules.walk_budget.ROW_BUDGET`), and a poll one for all of them
(:data:`FIRE_TIME_BUDGET`): what does not fit carries over to the next poll.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from exporter.sidecar.config import StoreConfig
from exporter.sidecar.decode import UndecodableJob, decode_job_state
from exporter.sidecar.schedules.fire_times import next_fire_time, previous_fire_time
from exporter.sidecar.schedules.walk_budget import ROW_BUDGET, WalkBudgetExceeded, walk_budget
from exporter.sidecar.sources.job_entries import CachedRow

# The job source's lines keep the one logger name, whichever of its modules writes them.
log = logging.getLogger("exporter.sidecar.sources.jobs")

FIRE_TIME_BUDGET = 2.0
"""Seconds a poll may spend on fire-time arithmetic; the rest carries over to the next poll."""

WALK_RETRY = 600.0
"""Seconds before the fire times of a job whose walk ran out of its budget are tried again."""


class FireTimes:
    """One store's fire times by trigger, and the heap of entries whose fire times fall due."""

    def __init__(self, store: StoreConfig) -> None:
        self.store = store
        # trigger key -> (latest fire time, until when that answer holds)
        self.by_trigger: dict[str, tuple[float | None, float]] = {}
        # (previous_until, sequence, raw id): the rows whose fire times are due to be worked
        # out again, soonest first; entries of replaced or gone rows are skipped when popped.
        self._due: list[tuple[float, int, Any]] = []
        self._pushed = 0

    def any_due(self, now: float) -> bool:
        """Whether some row's fire times are due to be worked out again at ``now``."""
        return bool(self._due) and self._due[0][0] <= now

    def pop_due(self, by_raw: dict[Any, CachedRow], now: float) -> dict[Any, CachedRow]:
        """Rows whose fire times must be worked out again, by id (in the order they fell due)."""
        heap = self._due
        due: dict[Any, CachedRow] = {}
        while heap and heap[0][0] <= now:
            until, _, raw_id = heapq.heappop(heap)
            entry = by_raw.get(raw_id)
            if entry is not None and entry.previous_until == until:
                due[raw_id] = entry
        return due

    def rows_to_fetch(self, due: dict[Any, CachedRow], now: float) -> list[Any]:
        """The due rows whose bytes are needed to walk their triggers: one row per trigger (the
        others share its fire times), and none for a trigger whose answer still holds."""
        fire_times = self.by_trigger
        wanted = []
        walked: set[str] = set()
        for raw_id, cached in due.items():
            key = cached.trigger_key
            known = fire_times.get(key) if key is not None else None
            if key is not None and (known is None or now >= known[1]) and key not in walked:
                walked.add(key)
                wanted.append(raw_id)
        return wanted

    def work_out_due(
        self,
        due: dict[Any, CachedRow],
        by_raw: dict[Any, CachedRow],
        gone: set[Any],
        fetched: dict[Any, bytes],
        now: float,
        budget_ends: float,
        changed: dict[Any, CachedRow],
    ) -> None:
        """The fire times of the due rows still present, into ``changed``: the rows fetched for
        it first, then those sharing their triggers."""
        waiting = []
        for raw_id, entry in due.items():
            if raw_id in gone or by_raw.get(raw_id) is not entry:
                continue
            if now < entry.previous_until:
                pass  # worked out already, as the row changed
            elif not self.work_out(raw_id, entry, None, fetched.get(raw_id), now, budget_ends):
                waiting.append((raw_id, entry))
                continue
            changed[raw_id] = entry
        for raw_id, entry in waiting:
            self.work_out(raw_id, entry, None, None, now, budget_ends, last_try=True)
            changed[raw_id] = entry

    def work_out(
        self,
        raw_id: Any,
        entry: CachedRow,
        trigger: Any,
        state: bytes | None,
        now: float,
        budget_ends: float,
        last_try: bool = False,
    ) -> bool:
        """Work out the job's latest fire time now, into its view; False if it could not be
        (over the poll's budget, or neither trigger nor bytes at hand: a later call may find it
        shared by another job of the same trigger, and ``last_try`` leaves it for a later poll).

        Shared with every job of the same trigger; worked out from the trigger, decoded from
        ``state`` if not given (triggers are not kept between polls: a cron trigger is ~4 KB,
        and decoding the row's bytes again costs far less than the arithmetic)."""
        key = entry.trigger_key
        assert key is not None
        known = self.by_trigger.get(key)
        if known is not None and now < known[1]:
            previous, entry.previous_until = known
        elif time.monotonic() < budget_ends and (trigger is not None or state is not None):
            trigger = trigger if trigger is not None else _trigger_of(state)
            previous, entry.previous_until = self._walk(entry, trigger, now)
            if entry.previous_until > now:
                self.by_trigger[key] = (previous, entry.previous_until)
        elif not last_try:
            return False
        else:
            previous = entry.view.previous_fire_time  # waits for a later poll
        if previous != entry.view.previous_fire_time:
            entry.view = replace(entry.view, previous_fire_time=previous)
        if entry.previous_until < math.inf:
            self._pushed += 1
            heapq.heappush(self._due, (entry.previous_until, self._pushed, raw_id))
        return True

    def _walk(self, entry: CachedRow, trigger: Any, now: float) -> tuple[float | None, float]:
        """:func:`_previous_fire` within :data:`ROW_BUDGET`; past it, this job alone goes
        without its expected run time until :data:`WALK_RETRY` seconds later."""
        try:
            with walk_budget(ROW_BUDGET):
                result = _previous_fire(trigger, now)
            entry.gave_up = False  # a retry that fits is logged again should a later one not
            return result
        except WalkBudgetExceeded:
            if not entry.gave_up:
                entry.gave_up = True
                log.warning(
                    "jobstore %s: job %r: gave up working out its fire times after %.1f s (its "
                    "trigger is too costly to walk); it has no "
                    "apscheduler_job_expected_run_timestamp_seconds, retried every %.0f s",
                    self.store.name,
                    entry.view.id,
                    ROW_BUDGET,
                    WALK_RETRY,
                )
            return None, now + WALK_RETRY

    def keep_only(self, live: set[str | None]) -> None:
        """Forget the fire times of schedules no job has any more."""
        self.by_trigger = {k: v for k, v in self.by_trigger.items() if k in live}

    def trim(self, by_raw: dict[Any, CachedRow]) -> None:
        """Rebuild the heap from the live entries once skipped ones have piled up in it."""
        if len(self._due) > 2 * len(by_raw) + 1000:
            self._due = [
                (entry.previous_until, 0, raw_id)
                for raw_id, entry in by_raw.items()
                if entry.trigger_key is not None and entry.previous_until < math.inf
            ]
            heapq.heapify(self._due)


def _trigger_of(state: object) -> Any:
    try:
        return decode_job_state(state).trigger  # type: ignore[arg-type]
    except UndecodableJob:  # decoded fine before; cannot happen for the same bytes
        return None


def _previous_fire(trigger: Any, now: float) -> tuple[float | None, float]:
    """The latest fire time at or before ``now``, and until when that answer holds."""
    if trigger is None:
        return None, now + 60.0
    moment = datetime.fromtimestamp(now, UTC)
    try:
        previous = previous_fire_time(trigger, moment)
        following = next_fire_time(trigger, moment + timedelta(microseconds=1))
    except WalkBudgetExceeded:
        raise
    except Exception:  # noqa: BLE001 - a decoded trigger with odd state must not stop the poll
        log.debug("cannot compute fire times", exc_info=True)
        return None, now + 60.0
    # A date trigger whose date has passed answers with that old date: no next time.
    until = following.timestamp() if following is not None else math.inf
    if until <= now:
        until = math.inf
    return (previous.timestamp() if previous is not None else None), until
