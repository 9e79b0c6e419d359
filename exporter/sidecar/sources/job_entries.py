"""The job source's decode cache: what is kept of one row between polls, and how it is built.

An entry is built only when a row's change signal (its digest, or its length when it has none)
differs from the last poll's: its ``job_state`` is decoded by the restricted unpickler, its text
made encodable and its labels capped, and the schedule's words worked out once per distinct
trigger. One bad row costs that row, never the read: an id that is not valid UTF-8, a
``job_state`` too large to fetch, or bytes the unpickler refuses make an undecodable entry.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from typing import Any

from exporter.sidecar.config import StoreConfig
from exporter.sidecar.decode import MAX_JOB_STATE_BYTES, UndecodableJob, decode_job_state
from exporter.sidecar.schedules.fire_times import trigger_kind
from exporter.sidecar.schedules.schedule import describe
from exporter.sidecar.snapshot import JobView
from exporter.sidecar.text import capped, encodable

# The job source's lines keep the one logger name, whichever of its modules writes them.
log = logging.getLogger("exporter.sidecar.sources.jobs")


@dataclass(slots=True)
class CachedRow:
    """What we know of one row, kept while its change signal stays the same.

    ``view`` is the last JobView published for the row: a steady poll hands out the very same
    object. ``previous`` (the latest fire time the trigger implied) only changes when the clock
    passes the trigger's next fire time, ``previous_until``, so it is recomputed about once per
    run instead of on every poll (cron arithmetic costs around a millisecond per job).
    """

    state: object  # the row's change signal (a digest of job_state), or ("length", size)
    view: JobView
    trigger_key: str | None = None  # None: no trigger to compute fire times from
    previous_until: float = -math.inf
    gave_up: bool = False  # the fire-time walk ran out of its budget (logged once)


class RowDecoder:
    """Builds the entries of one store's changed rows; keeps each schedule's words (trigger
    kind and schedule text) by trigger, since stores hold many jobs with the same schedule."""

    def __init__(self, store: StoreConfig) -> None:
        self.store = store
        self.words: dict[str, tuple[str, str]] = {}  # trigger key -> (kind, schedule text)

    def keep_only(self, live: set[str | None]) -> None:
        """Forget the words of schedules no job has any more."""
        self.words = {k: v for k, v in self.words.items() if k in live}

    def entry(
        self, job_id: str, valid_id: bool, state: object, size: object, key: object
    ) -> tuple[CachedRow, Any]:
        """A new entry for a row whose bytes changed, and its decoded trigger."""
        try:
            if not valid_id:
                raise UndecodableJob("the job id is not valid UTF-8")
            if state is None and isinstance(size, int) and size > MAX_JOB_STATE_BYTES:
                raise UndecodableJob(
                    f"job_state is larger than {MAX_JOB_STATE_BYTES} bytes ({size} bytes)"
                )
            job = decode_job_state(state)  # type: ignore[arg-type]
        except UndecodableJob as exc:
            log.warning(
                "jobstore %s: job %r has a job_state that cannot be decoded safely (%s); "
                "it is counted in jobstore_exporter_undecodable_jobs",
                self.store.name,
                job_id,
                exc,
            )
            return CachedRow(key, JobView(id=job_id, next_run_time=None, decoded=False)), None
        trigger_key = _trigger_key(job_id, job.trigger)
        words = self.words.get(trigger_key) if trigger_key is not None else None
        if words is None:  # the same schedule text for every job with an equal trigger
            words = (trigger_kind(job.trigger), describe(job.trigger))
            if trigger_key is not None:
                self.words[trigger_key] = words
        name, bad_name = encodable(job.name or "")
        func, bad_func = encodable(job.func or "")
        executor, bad_executor = encodable(job.executor)
        replaced = [
            field
            for field, bad in (("name", bad_name), ("func", bad_func), ("executor", bad_executor))
            if bad
        ]
        if replaced:
            log.warning(
                "jobstore %s: job %r has text that is not valid Unicode in %s; shown with U+FFFD "
                "and counted in jobstore_exporter_jobs_text_replaced",
                self.store.name,
                job_id,
                ", ".join(replaced),
            )
        view = JobView(
            id=job_id,
            next_run_time=None,
            decoded=True,
            # Interned: thousands of jobs share a function, an executor, often a name, and
            # each decoded row would otherwise hold copies of its own.
            name=sys.intern(capped(name)),
            func=sys.intern(func),
            executor=sys.intern(capped(executor)),
            trigger=words[0],
            schedule=words[1],
            misfire_grace_time=job.misfire_grace_time,
            text_replaced=bool(replaced),
        )
        return CachedRow(key, view, trigger_key), job.trigger


def _trigger_key(job_id: str, trigger: Any) -> str | None:
    """Equal for triggers that fire at the same times. ``repr`` names the fields, the zone and
    the dates, but prints the dates to the second: two interval jobs started a fraction of a
    second apart fire that fraction apart, so the exact instants are part of the key too."""
    if trigger is None:
        return None
    try:
        key = f"{type(trigger).__qualname__}:{trigger!r}:{_instants(trigger)}"
        return sys.intern(key)  # one copy per schedule
    except Exception:  # noqa: BLE001 - a decoded trigger with odd state: do not share its times
        return f"job:{job_id}"


def _instants(trigger: Any) -> str:
    """The trigger's own dates in full precision, and those of the triggers it combines (And/Or
    trees are bounded when decoded, so this walk is too)."""
    dates: list[Any] = [
        getattr(trigger, name, None) for name in ("start_date", "end_date", "run_date")
    ]
    parts = [date.isoformat() if hasattr(date, "isoformat") else "-" for date in dates]
    parts += [f"({_instants(child)})" for child in getattr(trigger, "triggers", None) or ()]
    return ",".join(parts)
