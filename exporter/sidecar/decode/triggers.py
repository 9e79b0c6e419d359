"""Trigger classes as the unpickler hands them out: stand-ins with their own ``__setstate__``, and
And/Or triggers measured on their pickled state before any child is built.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Final

from apscheduler.triggers.combining import AndTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.cron import expressions as cron_expressions
from apscheduler.triggers.cron import fields as cron_fields
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from exporter.sidecar.decode.model import (
    _MAX_TRIGGER_CHILDREN,
    _MAX_TRIGGER_NESTING,
    _MAX_TRIGGER_NODES,
)
from exporter.sidecar.decode.pickle_scan import reject as _reject

try:  # APScheduler 3.11+ only; 3.10 writers never store it.
    from apscheduler.triggers.calendarinterval import (
        CalendarIntervalTrigger as _CalendarIntervalTrigger,
    )
except ImportError:  # pragma: no cover - depends on the installed APScheduler
    _CalendarIntervalTrigger = None


def _stand_in(real: type, attributes: frozenset[str]) -> type:
    """A stand-in for a cron field/expression class, which has no ``__setstate__``.

    Without one, BUILD applied to the *class* object would ``setattr`` arbitrary attributes on
    APScheduler's real class for the whole process. The stand-in's ``__setstate__`` accepts
    exactly the attributes APScheduler 3.10/3.11 write. Instances keep the stand-in class until
    the finished trigger has been validated (:func:`_check_cron` then gives them the real
    class), so no opcode can reach a real instance's default BUILD.
    """

    def __setstate__(self: Any, state: object) -> None:
        if type(state) is not dict or state.keys() != attributes:
            _reject(f"job_state has an invalid {real.__name__}")
        self.__dict__.update(state)

    return type(real.__name__, (real,), {"__setstate__": __setstate__, "__module__": __name__})


_EXPRESSION_ATTRIBUTES: Final[dict[type, frozenset[str]]] = {
    cron_expressions.AllExpression: frozenset({"step"}),
    cron_expressions.RangeExpression: frozenset({"step", "first", "last"}),
    cron_expressions.MonthRangeExpression: frozenset({"step", "first", "last"}),
    cron_expressions.WeekdayRangeExpression: frozenset({"step", "first", "last"}),
    cron_expressions.WeekdayPositionExpression: frozenset({"step", "option_num", "weekday"}),
    cron_expressions.LastDayOfMonthExpression: frozenset({"step"}),
}
_FIELD_CLASSES: Final = (
    cron_fields.BaseField,
    cron_fields.WeekField,
    cron_fields.DayOfMonthField,
    cron_fields.DayOfWeekField,
    cron_fields.MonthField,
)
_FIELD_ATTRIBUTES: Final = frozenset({"name", "is_default", "expressions"})

# The classes a combining trigger may name in its state, by APScheduler's "module:qualname".
_NESTED_TRIGGERS: Final[dict[str, type]] = {
    "apscheduler.triggers.cron:CronTrigger": CronTrigger,
    "apscheduler.triggers.interval:IntervalTrigger": IntervalTrigger,
    "apscheduler.triggers.date:DateTrigger": DateTrigger,
    "apscheduler.triggers.combining:AndTrigger": AndTrigger,
    "apscheduler.triggers.combining:OrTrigger": OrTrigger,
}
if _CalendarIntervalTrigger is not None:
    _NESTED_TRIGGERS["apscheduler.triggers.calendarinterval:CalendarIntervalTrigger"] = (
        _CalendarIntervalTrigger
    )


_COMBINING_REFS: Final = frozenset(
    {"apscheduler.triggers.combining:AndTrigger", "apscheduler.triggers.combining:OrTrigger"}
)

# Triggers the combined triggers of the row being decoded may still build (per thread and
# decode: see ``_unpickle``). A row can hold several combined triggers (one BUILD each, all
# sharing one subtree), so a bound per trigger alone would not do.
_nodes_left: ContextVar[list[int] | None] = ContextVar("_nodes_left", default=None)


def _measure_combining(
    state: object, depth: int, sizes: dict[int, tuple[int, int]]
) -> tuple[int, int]:
    """The (triggers, nesting) that restoring ``state`` would build, found without building.

    A state shared through the pickle memo is measured once but counted wherever it is
    referenced, as restoring builds it there again; so the work is bounded by the size of the
    pickle while the count is that of the tree. Rejects as soon as a bound is passed (a cycle
    in the state passes the nesting bound at once).
    """
    if depth >= _MAX_TRIGGER_NESTING:
        _reject("job_state nests combined triggers too deeply")
    known = sizes.get(id(state))
    if known is not None:
        if depth + known[1] > _MAX_TRIGGER_NESTING:
            _reject("job_state nests combined triggers too deeply")
        return known
    if type(state) is not dict:
        _reject("job_state has an invalid combined trigger")
    children: Any = state.get("triggers")
    if type(children) not in (list, tuple):
        _reject("job_state has an invalid combined trigger")
    if len(children) > _MAX_TRIGGER_CHILDREN:
        _reject(f"job_state combines more than {_MAX_TRIGGER_CHILDREN} triggers in one")
    nodes, height = 1, 1
    for child in children:
        if type(child) in (tuple, list) and len(child) == 2 and child[0] in _COMBINING_REFS:
            child_nodes, child_height = _measure_combining(child[1], depth + 1, sizes)
            nodes += child_nodes
            height = max(height, child_height + 1)
        else:  # a leaf, or something _restore_combining rejects
            nodes += 1
        if nodes > _MAX_TRIGGER_NODES:
            _reject(f"job_state combines more than {_MAX_TRIGGER_NODES} triggers")
    sizes[id(state)] = (nodes, height)
    return nodes, height


def _restore_bounded(obj: Any, state: object) -> None:
    """Restore a combined trigger handed out by ``find_class``, within the row's bounds."""
    nodes, _height = _measure_combining(state, 0, {})
    left = _nodes_left.get()
    if left is None:  # called outside a decode: this trigger alone is bounded
        left = [_MAX_TRIGGER_NODES]
    if nodes > left[0]:
        _reject(f"job_state combines more than {_MAX_TRIGGER_NODES} triggers")
    left[0] -= nodes
    _restore_combining(obj, state, 0)


def _restore_combining(obj: Any, state: object, depth: int) -> None:
    """What ``BaseCombiningTrigger.__setstate__`` does, minus importing arbitrary modules.

    APScheduler resolves each child's ``"module:Class"`` with ``ref_to_obj``, which imports any
    module a row names. Here the name must be one of the trigger classes above; the child is
    then restored with its own (import-free) ``__setstate__``, or recursively for And/Or.
    Only reached through :func:`_restore_bounded`, which has checked the size of the tree.
    """
    if depth >= _MAX_TRIGGER_NESTING:
        _reject("job_state nests combined triggers too deeply")
    if type(state) is not dict:
        _reject("job_state has an invalid combined trigger")
    version = state.get("version", 1)
    if type(version) is not int or version > 1:
        _reject("job_state has a combined trigger of an unsupported version")
    children: Any = state.get("triggers")
    if type(children) not in (list, tuple):
        _reject("job_state has an invalid combined trigger")
    built = []
    for child in children:
        if type(child) not in (tuple, list) or len(child) != 2:
            _reject("job_state has an invalid combined trigger")
        ref, child_state = child
        cls: Any = _NESTED_TRIGGERS.get(ref) if type(ref) is str else None
        if cls is None:
            _reject("job_state combines a trigger class outside the allowlist")
        # Children are created here, never by an opcode, so no later BUILD can reach them
        # and they may have their real class from the start.
        trigger = cls.__new__(cls)
        if cls is AndTrigger or cls is OrTrigger:
            _restore_combining(trigger, child_state, depth + 1)
        elif type(child_state) is dict:
            trigger.__setstate__(child_state)
        else:
            _reject("job_state has an invalid combined trigger")
        built.append(trigger)
    obj.jitter = state.get("jitter")
    obj.triggers = built


class _SafeAndTrigger(AndTrigger):  # type: ignore[misc]
    """Handed out for ``AndTrigger``. It keeps this class until the decoded trigger has been
    validated: a real ``AndTrigger`` reachable from the memo could be sent through the real,
    importing ``__setstate__`` by a second BUILD."""

    __slots__ = ()

    def __setstate__(self, state: object) -> None:
        _restore_bounded(self, state)


class _SafeOrTrigger(OrTrigger):  # type: ignore[misc]
    """Handed out for ``OrTrigger``; see :class:`_SafeAndTrigger`."""

    __slots__ = ()

    def __setstate__(self, state: object) -> None:
        _restore_bounded(self, state)
