"""Helpers shared by test modules: database servers, a private PostgreSQL cluster, free ports.

Test modules import these from here (``from support import ...``), not from a conftest: several
conftest files can exist and share that module name, this one cannot.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa

T = TypeVar("T")

IN_CI = os.environ.get("CI") == "true"

PG_ADMIN_URL = os.environ.get(
    "JOBSTORE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_ADMIN_URL = os.environ.get(
    "JOBSTORE_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)


def need_server(reason: str) -> None:
    """Skip (locally) or fail (in CI) because a server the test needs is absent."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: servers are required)", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class Database:
    """A throwaway database for one test: ``url`` is what an app or the exporter is given."""

    kind: str  # "sqlite", "postgresql" or "mariadb"
    url: str

    def engine(self) -> sa.Engine:
        """A plain read-write engine, for tests that arrange data."""
        return sa.create_engine(self.url)


@dataclass
class PrivatePostgres:
    """A cluster only this test uses: stopping it never disturbs the machine's shared server."""

    data_dir: Path
    port: int
    socket_dir: Path
    bindir: Path

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        command = [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args]
        subprocess.run(_as_postgres(command), check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1"
        self._pg_ctl("-o", options, "-l", str(self.data_dir.parent / "log"), "-w", "start")

    def stop(self) -> None:
        self._pg_ctl("-m", "immediate", "-w", "stop")


def _as_postgres(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; CI and these machines run tests as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _postgres_bindir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return next((c for c in candidates if (c / "initdb").exists()), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], T],
    timeout: float = 20.0,
    what: str = "",
    *,
    interval: float = 0.03,
    details: Callable[[], str] | None = None,
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; after ``timeout``
    seconds fail, naming ``what`` and adding ``details()`` (e.g. log tails)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = details() if details is not None else ""
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what or condition}{extra}"
            )
        time.sleep(interval)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Ask a child process to stop with ``sig``; kill it if it has not within ``timeout``."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
