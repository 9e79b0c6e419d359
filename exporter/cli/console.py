"""The Rich consoles of the command line: Rich's look on a terminal, one line per result off it.

Rich wraps at the terminal's width, and at 80 columns when the output is not a terminal. Piped
into a log, a probe or ``grep``, a wrapped verdict or error becomes three unrelated lines, so off
a terminal the consoles never wrap: tables are as wide as their content and every message stays
on its line. On a terminal nothing changes (colours, boxes, the terminal's width).
"""

from __future__ import annotations

from rich.console import Console

# Wide enough that no table or message reaches it; Rich sizes tables to their content anyway.
UNBOUNDED = 1_000_000


def make_console(*, stderr: bool = False) -> Console:
    """A console for stdout (or stderr) that wraps only when it writes to a terminal."""
    console = Console(stderr=stderr, highlight=False)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=UNBOUNDED)


def on_terminal(console: Console) -> bool:
    """True when ``console`` writes to a terminal (where wrapping and cutting text is right)."""
    return console.is_terminal
