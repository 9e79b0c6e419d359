"""What a poll leaves behind is kept out of the cyclic GC's walks, and never leaked for good.

A full collection over the sidecar's heap holds the interpreter lock for tens of ms (the event
loop that serves scrapes waits all that time); ``HeapFreezer`` freezes the heap after each poll.
These check the promises that make that safe: freezing is undone when the sidecar stops, and a
reference cycle frozen by mistake is still collected after ``period``.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from exporter.sidecar.memory import HeapFreezer


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic GC can free it


def test_a_poll_freezes_what_is_alive_and_close_gives_it_back() -> None:
    freezer = HeapFreezer(period=600.0, clock=lambda: 0.0)
    freezer.after_poll()
    assert gc.get_freeze_count() > 0
    freezer.close()
    assert gc.get_freeze_count() == 0


def test_a_frozen_cycle_is_collected_after_the_period() -> None:
    now = [0.0]
    freezer = HeapFreezer(period=600.0, clock=lambda: now[0])
    node = Node()
    gone = weakref.ref(node)
    freezer.after_poll()  # frozen while still alive
    del node
    gc.collect()
    assert gone() is not None, "a frozen cycle is out of the collector's reach until the period"
    now[0] = 601.0
    freezer.after_poll()
    assert gone() is None
    freezer.close()
