"""How every surface words a duration, an age, a size and a moment.

The check tree, ``history``, ``backup list``, the backup job's log lines and the status page
describe the same quantities; reading "0m" in one place, "(20s ago)" in another and
"8,810 bytes" in a third makes people wonder whether they are the same thing. These functions
are the one style:

- a span is its largest whole unit: ``42s``, ``12m``, ``5h``, ``3d``;
- a moment relative to now is ``in 5h``, ``overdue by 2h`` (a next run) or ``20s ago``;
- a run's duration keeps its precision: ``312 ms``, ``1.20 s``, ``2.5 min``;
- a size is binary with one decimal: ``512 B``, ``8.6 KiB``, ``1.2 GiB``;
- a moment is UTC, to the second: ``2026-11-25 02:00:00`` (tables say "(UTC)" in their
  title), or ``2026-11-25 02:00:00 UTC`` where it stands alone.

Pure functions of their arguments (no clock reads), so tests and every renderer agree.
"""

from __future__ import annotations

from datetime import UTC, datetime

_SPAN_UNITS = ((86400, "d"), (3600, "h"), (60, "m"))
_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def span(seconds: float) -> str:
    """The largest whole unit of a non-negative duration: ``42s``, ``12m``, ``5h``, ``3d``."""
    seconds = max(0.0, seconds)
    for size, unit in _SPAN_UNITS:
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def until(seconds: float) -> str:
    """A next run ``seconds`` from now: ``in 5h``, or ``overdue by 2h`` when it has passed."""
    if seconds < 0:
        return f"overdue by {span(-seconds)}"
    return f"in {span(seconds)}"


def ago(seconds: float) -> str:
    """Something that happened ``seconds`` ago: ``just now``, ``20s ago``, ``3d ago``.

    A negative age (a clock ahead of ours) says so instead of pretending it is recent.
    """
    if seconds < 0:
        return f"{span(-seconds)} in the future"
    if seconds < 1:
        return "just now"
    return f"{span(seconds)} ago"


def run_duration(seconds: float | None) -> str:
    """How long a run took, with the precision that matters at its scale; ``-`` if unknown."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def size(value: float | None) -> str:
    """A byte count: ``512 B``, ``8.6 KiB``, ``1.2 GiB``; ``-`` if unknown."""
    if value is None:
        return "-"
    amount = float(value)
    for unit in _SIZE_UNITS:
        if amount < 1024 or unit == _SIZE_UNITS[-1]:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def moment(value: datetime | float | None, *, zone: bool = False) -> str:
    """A UTC moment to the second (``2026-11-25 02:00:00``), from a datetime or epoch seconds.

    ``zone`` appends `` UTC`` for places where no title or header says so; ``-`` if unknown.
    """
    if value is None:
        return "-"
    when = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
    text = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{text} UTC" if zone else text
