"""The Rich consoles of the command line: Rich's look on a terminal, one line per result off it.

Rich wraps at the terminal's width, and at 80 columns when the output is not a terminal. Piped
into a log, a probe or ``grep``, a wrapped verdict or error becomes three unrelated lines, so off
a terminal the consoles never wrap: tables are as wide as their content and every message stays
on its line. On a terminal nothing changes (colours, boxes, the terminal's width).
"""

from __future__ import annotations

import functools
import os
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

# Wide enough that no table or message reaches it; Rich sizes tables to their content anyway.
UNBOUNDED = 1_000_000


def make_console(*, stderr: bool = False) -> Console:
    """A console for stdout (or stderr) that wraps only when it writes to a terminal."""
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=UNBOUNDED)


def on_terminal(console: Console) -> bool:
    """True when ``console`` writes to a terminal (where wrapping and cutting text is right)."""
    return console.is_terminal


class LazyConsole:
    """A :func:`make_console` console, made the first time it is used.

    Rich stays resident for the life of the process once imported (about 1.5 MB). ``serve``
    runs for weeks and writes through a console only when it refuses to start, so the
    command line's shared stderr console waits until something is printed on it."""

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr

    @functools.cached_property
    def console(self) -> Console:
        return make_console(stderr=self._stderr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


def surely_not_a_terminal(stream: IO[str]) -> bool:
    """True when Rich would certainly not treat ``stream`` as a terminal (the environment does
    not claim one, and the stream is no tty), answered without importing Rich. False means
    "ask Rich"."""
    claimed = os.environ.get("TTY_COMPATIBLE", "")
    if claimed == "0":
        return True
    if claimed == "1" or "FORCE_COLOR" in os.environ:
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return isatty is None or not isatty()
    except ValueError:  # a closed stream
        return True
