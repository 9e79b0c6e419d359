"""Inert placeholders for every global outside the allowlist, and the allowlist's own
constructors with narrow contracts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from exporter.sidecar.decode.pickle_scan import reject as _reject

try:  # APScheduler 3.11+ only; 3.10 writers never store it.
    from apscheduler.triggers.calendarinterval import (
        CalendarIntervalTrigger as _CalendarIntervalTrigger,
    )
except ImportError:  # pragma: no cover - depends on the installed APScheduler
    _CalendarIntervalTrigger = None


class _Placeholder:
    """Stands in for any object whose class is not on the allowlist.

    ``find_class`` returns this class itself for every unknown global, so the pickle opcodes
    that build objects (REDUCE, NEWOBJ, INST/OBJ) create an instance and keep nothing: the
    arguments meant for ``os.system`` or an app's constructor are dropped unread. Calling an
    instance yields another placeholder, and the container protocols pickle may use on an
    object (BUILD, APPEND(S), SETITEM(S), ADDITEMS) are accepted and ignored, so an app object
    in ``args`` costs one placeholder instead of the whole row.
    """

    __slots__ = ()

    def __new__(cls, *args: object, **kwargs: object) -> _Placeholder:
        return object.__new__(_Placeholder)

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __call__(self, *args: object, **kwargs: object) -> _Placeholder:
        return _Placeholder()

    def __setstate__(self, state: object) -> None:
        pass

    def __setitem__(self, key: object, value: object) -> None:
        pass

    def append(self, item: object) -> None:
        pass

    def extend(self, items: object) -> None:
        pass

    def add(self, item: object) -> None:
        pass

    def __repr__(self) -> str:
        return "<placeholder>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a placeholder for an undecoded object cannot be pickled")


class _Constructor:
    """A callable the allowlist hands to the unpickler in place of a real global.

    Module functions would do, except that pickle's BUILD opcode on a function sets its
    attributes (``__defaults__`` included) for the whole process; this wrapper refuses BUILD
    and has no attributes to set.
    """

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __setstate__(self, state: object) -> NoReturn:
        _reject("job_state tries to modify an allowed global")

    def __repr__(self) -> str:
        return f"<safe {self._fn.__name__}>"
