"""Fire times a trigger implies, walked with bounds: the latest at or before now, the next after.

``previous_fire_time`` feeds ``apscheduler_job_expected_run_timestamp_seconds``: compared with
the last recorded run it reveals a run that never happened (a 02:00 backup skipped across a
restart leaves no trace anywhere else), so it must be exact at the boundaries and cheap enough to
run for every job at every poll. ``next_fire_time`` says until when that answer holds, and gives
the job pages their upcoming runs.

Only public trigger attributes and ``get_next_fire_time`` are used: the triggers come out of a
restricted decoder and may be older or newer 3.x versions than the one installed here. Every
step of a walk is charged to the caller's walk budget (``exporter.sidecar.schedules.walk_budget``),
if any, and And triggers are walked here rather than by APScheduler, whose own walk can loop
forever.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, time, timedelta, timezone, tzinfo
from typing import Any

from apscheduler.triggers.combining import AndTrigger, OrTrigger

from exporter.sidecar.schedules.walk_budget import charge

__all__ = ["next_fire_time", "previous_fire_time", "trigger_kind"]

_KINDS = {
    "CronTrigger": "cron",
    "IntervalTrigger": "interval",
    "DateTrigger": "date",
    "AndTrigger": "and",
    "OrTrigger": "or",
}

_EPOCH_FLOOR = 2 * 86400  # cron years start at 1970; stay clear of it in every zone
# An And whose parts agree less often than this gives up (None). Walking back, each round asks
# every part for its latest time; walking forward, each round is one cheap `get_next_fire_time`.
_AND_ROUNDS_BACK = 64
_AND_ROUNDS_FORWARD = 1000
_STEPS = 100_000  # hard cap on any forward walk


def trigger_kind(trigger: object) -> str:
    """The ``trigger`` label value: matched by class name so decoder stand-ins classify too."""
    for cls in type(trigger).__mro__:
        if cls.__name__ in _KINDS:
            return _KINDS[cls.__name__]
    return "other"


def previous_fire_time(trigger: object, now: datetime) -> datetime | None:
    """The latest fire time the trigger implies at or before ``now``, or None if there is none.

    The result is in UTC: arithmetic on a datetime in a DST zone works on the wall clock
    (``03:00 CEST - 1 µs`` lands in the spring-forward gap), and two datetimes of one zone
    compare as wall clocks, ignoring ``fold``. Convert for display only.

    Jitter is ignored (the nominal time is what a run must not be earlier than). A naive ``now``
    is taken as UTC. Triggers this module does not know, and combinations that cannot be solved
    within a bounded effort, give None rather than a guess.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    try:
        return _latest(trigger, now.astimezone(UTC))
    except (ArithmeticError, AttributeError, TypeError, ValueError):
        return None


# --- previous_fire_time -------------------------------------------------------------------


def _latest(trigger: Any, now: datetime) -> datetime | None:
    """Dispatch on the trigger kind; ``now`` and the result are in UTC."""
    charge()
    kind = trigger_kind(trigger)
    if kind == "cron":
        return _cron_latest(_bounded(_without_jitter(trigger), now + timedelta(days=1)), now)
    if kind == "interval":
        return _interval_latest(trigger, now)
    if kind == "date":
        run_date = trigger.run_date.astimezone(UTC)
        return run_date if run_date <= now else None
    if kind == "or":
        found = [f for f in (_latest(t, now) for t in trigger.triggers) if f is not None]
        return max(found, default=None)
    if kind == "and":
        return _and_latest(list(trigger.triggers), now)
    if type(trigger).__name__ == "CalendarIntervalTrigger":
        return _calendar_latest(_without_jitter(trigger), now)
    return None


def _without_jitter(trigger: Any) -> Any:
    """A copy without jitter, so probing ``get_next_fire_time`` yields nominal times."""
    if not getattr(trigger, "jitter", None):
        return trigger
    clone = copy.copy(trigger)
    clone.jitter = None
    return clone


def _bounded(trigger: Any, end: datetime) -> Any:
    """A copy that stops at ``end``, so a probe past ``now`` gives up at once.

    Without it a cron that never fires (``day=30, month=2``) makes every probe search to the year
    9999. APScheduler compares ``end_date`` on the wall clock, so ``end`` keeps a day of margin
    beyond ``now`` for the repeated hour at the end of DST.
    """
    own = trigger.end_date
    if own is not None and own.astimezone(UTC) <= end:
        return trigger
    clone = copy.copy(trigger)
    clone.end_date = end.astimezone(trigger.timezone)
    return clone


def _cron_latest(trigger: Any, now: datetime) -> datetime | None:
    """The latest fire at or before ``now`` of the scheduler's own sequence of fire times.

    A running scheduler steps from fire to fire with ``get_next_fire_time(previous, ...)``.
    In APScheduler 3.11 the step that crosses a DST change adds wall-clock time in UTC, lands
    late by the change and skips the fires in between (a cron on day 1 at 00:00 in
    Europe/Berlin steps from 1 March to 1 May; every 5 minutes on weekdays skips Monday 00:00
    to 00:55), while a search from after the change does see them. So the search gives the
    latest fire and the one before it, and the answer is stepped to from the earlier one as
    the scheduler does; if both follow the zone's last change, from the last fire before it.
    """
    found = _cron_search(trigger, now)
    if found is None:
        return None
    current = _cron_search(trigger, found - timedelta(microseconds=1))
    if current is None:
        return found
    change = _last_offset_change(trigger.timezone, found)
    if change is not None and current >= change:
        before = _cron_search(trigger, change - timedelta(microseconds=1))
        landing = None if before is None else _step(trigger, before)
        if before is not None and (landing is None or landing > found):
            current = before
    for _ in range(_STEPS):
        charge()
        following = _step(trigger, current)
        if following is None or following > now:
            break
        current = following
    return current


def _step(trigger: Any, fire: datetime) -> datetime | None:
    """The scheduler's next fire after ``fire``, which it holds in the trigger's zone.

    (Given in UTC, a fire in the repeated hour of the fall-back night comes back unchanged:
    across zones, PEP 495 makes a datetime in the fold unequal to every other.)
    """
    local = fire.astimezone(trigger.timezone)
    following = trigger.get_next_fire_time(local, local)
    return None if following is None else following.astimezone(UTC)


def _last_offset_change(zone: tzinfo, moment: datetime) -> datetime | None:
    """The last change of the zone's UTC offset at or before ``moment``, within a year.

    Weekly probes back (no zone changes twice in a week), then bisection to the second.
    """
    if isinstance(zone, timezone):
        return None
    offset = moment.astimezone(zone).utcoffset()
    later = int(moment.timestamp())
    for _ in range(54):
        earlier = later - 7 * 86400
        if datetime.fromtimestamp(earlier, zone).utcoffset() != offset:
            while later - earlier > 1:
                middle = (earlier + later) // 2
                if datetime.fromtimestamp(middle, zone).utcoffset() == offset:
                    later = middle
                else:
                    earlier = middle
            return datetime.fromtimestamp(later, UTC)
        later = earlier
    return None


def _cron_search(trigger: Any, now: datetime) -> datetime | None:
    """Search backwards with ``get_next_fire_time`` as the probe.

    ``first(t)``, the first fire at or after ``t``, grows with ``t``, so the answer is
    ``first(t)`` for the largest whole second ``t`` with ``first(t) <= now``. A window that
    doubles backwards from ``now`` finds a ``t`` that qualifies, bisection then finds the
    largest: about two probes per doubling of the gap to the answer, whether the cron fires
    every second or last fired ten years ago. One probe from the floor answers "never".
    """

    def first(second: int) -> datetime | None:
        charge()
        found = trigger.get_next_fire_time(None, datetime.fromtimestamp(second, UTC))
        return None if found is None else found.astimezone(UTC)

    def fits(found: datetime | None) -> bool:
        return found is not None and found <= now

    high = int(now.timestamp() // 1)
    floor = min(_EPOCH_FLOOR, high)
    best = first(floor)
    if not fits(best):
        return None
    good, bad, width = floor, None, 1
    while high - width + 1 > floor:
        probe = first(high - width + 1)
        if fits(probe):
            good, best = high - width + 1, probe
            break
        bad = high - width + 1
        width *= 2
    while bad is not None and bad - good > 1:
        middle = (good + bad) // 2
        probe = first(middle)
        if fits(probe):
            good, best = middle, probe
        else:
            bad = middle
    return best


def _interval_latest(trigger: Any, now: datetime) -> datetime | None:
    """Fires are ``start_date + k * interval`` in absolute time: pure arithmetic, in UTC.

    (Subtracting two datetimes that share a ZoneInfo compares wall clocks, hence UTC first.)
    """
    start = trigger.start_date.astimezone(UTC)
    step = trigger.interval if trigger.interval > timedelta(0) else timedelta(seconds=1)
    limit = now
    if trigger.end_date is not None:
        limit = min(limit, trigger.end_date.astimezone(UTC))
    if limit < start:
        return None
    return start + ((limit - start) // step) * step


def _and_latest(triggers: list[Any], now: datetime) -> datetime | None:
    """Walk back until every part agrees; each round moves to the earliest of their answers.

    No common fire lies between the earliest answer and ``now`` (that part does not fire
    there), so the walk never skips one. APScheduler's own ``AndTrigger.get_next_fire_time``
    is not used: it can loop forever (parts that disagree once a previous fire time is given,
    or a date part already in the past).
    """
    if not triggers:
        return None
    moment = now
    for _ in range(_AND_ROUNDS_BACK):
        charge()
        found = [_latest(t, moment) for t in triggers]
        if any(f is None for f in found):
            return None
        times = [f for f in found if f is not None]
        if min(times) == max(times):
            return times[0]
        moment = min(times)
    return None


def _calendar_latest(trigger: Any, now: datetime) -> datetime | None:
    """Follow the calendar chain from the first fire, jumping ahead when it is day-based.

    Months and years keep the day of the month and skip months without it, so a chain step is
    at least a month and a walk over decades stays short. A chain of days or weeks is jumped to
    just before ``now`` by date arithmetic, then walked the last few steps (which also honours
    dates dropped by a DST gap and ``end_date``).
    """
    zone = trigger.timezone
    current = trigger.get_next_fire_time(None, now)
    if current is None or current.astimezone(UTC) > now:
        return None
    step = int(trigger.days) + 7 * int(trigger.weeks)
    if not trigger.years and not trigger.months and step > 0:
        first_day = current.astimezone(zone).date()
        jumps = (now.astimezone(zone).date() - first_day).days // step - 3
        if jumps > 0:
            anchor = datetime.combine(first_day + timedelta(days=jumps * step), time(12), zone)
            jumped = trigger.get_next_fire_time(anchor, now)
            if jumped is not None and jumped.astimezone(UTC) <= now:
                current = jumped
    last = None
    for _ in range(_STEPS):
        charge()
        if current is None or current.astimezone(UTC) > now:
            break
        last = current
        current = trigger.get_next_fire_time(current, now)
    return None if last is None else last.astimezone(UTC)


def next_fire_time(trigger: Any, now: datetime) -> datetime | None:
    """The next fire time at or after ``now``, never looping forever.

    APScheduler's ``AndTrigger.get_next_fire_time`` loops until its children agree; two interval
    triggers that never coincide make it spin for ever, which would wedge the poll thread on one
    crafted (or merely unlucky) row. Combinators are walked here with a bound; leaves are asked
    directly. Past the bound the answer is "no known next time" (None).
    """
    charge()
    if isinstance(trigger, AndTrigger):
        for _ in range(_AND_ROUNDS_FORWARD):
            charge()
            times = [next_fire_time(child, now) for child in trigger.triggers]
            if any(moment is None for moment in times):
                return None
            known = [t for t in times if t is not None]
            latest = max(known, key=lambda moment: moment.timestamp())
            # Instants, not datetimes: aware datetimes of different zones never compare equal
            # inside a repeated fall-back hour.
            if len({moment.timestamp() for moment in known}) == 1:
                return latest
            now = latest
        return None
    if isinstance(trigger, OrTrigger):
        times = [next_fire_time(child, now) for child in trigger.triggers]
        known = [moment for moment in times if moment is not None]
        return min(known) if known else None
    result: datetime | None = trigger.get_next_fire_time(None, now)
    return result
