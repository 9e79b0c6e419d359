"""Job functions the tests' schedulers reference by "sample_jobs:name" (tests/ is on sys.path)."""

from __future__ import annotations


def noop() -> None:
    return None


def fail() -> None:
    raise RuntimeError("sample job failed on purpose")


class Greeter:
    """An app object: a job on its bound method stores the instance in the row's args."""

    def __init__(self, who: str) -> None:
        self.who = who

    def greet(self) -> str:
        return f"hello {self.who}"
