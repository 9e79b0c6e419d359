"""Connection limits of `serve`: silent, slow and idle connections are closed, and a flood of
them, even under a low open-file limit, never locks a scrape out. Plain HTTP and TLS alike."""

from __future__ import annotations

import http.client
import re
import resource
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from pages_support import many_jobs
from pki import Pki, make_pki
from stores import write_jobs
from support import Database, free_port, stop

from exporter.sidecar.config import load_config


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    with make_pki() as made:
        yield made


@dataclass
class Exporter:
    port: int
    client: ssl.SSLContext | None  # None: plain HTTP
    log_path: Path

    def connect(self, timeout: float = 10) -> socket.socket:
        """A connected socket; over TLS, handshake done."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        if self.client is None:
            return sock
        return self.client.wrap_socket(sock, server_hostname="localhost")

    def get(self, path: str) -> int:
        """Status of one GET on a fresh connection."""
        if self.client is None:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        else:
            connection = http.client.HTTPSConnection(
                "127.0.0.1", self.port, context=self.client, timeout=10
            )
        try:
            connection.request("GET", path, headers={"Host": "localhost"})
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    @property
    def output(self) -> str:
        return self.log_path.read_text()


@contextmanager
def serving(
    db: Database, tmp_path: Path, pki: Pki | None, *flags: str, nofile: int | None = None
) -> Iterator[Exporter]:
    """`jobstore-exporter serve` in a child process, over TLS when ``pki`` is given."""
    write_jobs(db.url)
    port = free_port()
    command = [
        sys.executable, "-m", "exporter", "serve", "--db-url", db.url,
        "--listen-address", f"127.0.0.1:{port}", "--poll-interval", "1", *flags,
    ]  # fmt: skip
    client = None
    if pki is not None:
        pki.place(tmp_path)
        web = tmp_path / "web.yml"
        web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
        command += ["--web-config-file", str(web)]
        client = pki.client()

    def lower_nofile() -> None:
        if nofile is not None:
            _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

    log_path = tmp_path / f"serve-{port}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=lower_nofile
        )
    exporter = Exporter(port, client, log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if exporter.get("/healthz") == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"exporter did not come up:\n{exporter.output}")
            time.sleep(0.1)
        yield exporter
    finally:
        stop(proc)


def closed_by_peer(sock: socket.socket, within: float = 10) -> bool:
    """True if the server closes ``sock`` within ``within`` seconds (EOF or reset)."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:  # reset, or a TLS connection cut without close_notify
        return True


def survives_slow_header(sock: socket.socket, seconds: float = 10) -> bool:
    """Send a request header one byte every 0.2 s; False once the server has cut it off."""
    header = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 200
    deadline = time.monotonic() + seconds
    for byte in header:
        if time.monotonic() > deadline:
            return True
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return False
        time.sleep(0.2)
    return True


MODES = ["plain", "tls"]


@pytest.mark.parametrize("mode", MODES)
def test_silent_slow_and_idle_connections_are_closed(
    mode: str, sqlite_db: Database, tmp_path: Path, pki: Pki
) -> None:
    flags = ("--web-header-timeout", "1", "--web-idle-timeout", "1")
    with serving(sqlite_db, tmp_path, pki if mode == "tls" else None, *flags) as exporter:
        # Never a byte (over TLS: not even a ClientHello).
        with socket.create_connection(("127.0.0.1", exporter.port), timeout=10) as silent:
            assert closed_by_peer(silent), "a silent connection stayed open"
        # Headers trickling in, one byte at a time, within TLS when on.
        with exporter.connect() as slow:
            assert not survives_slow_header(slow), "a slow header kept its connection"
        # A kept-alive connection after its request, then nothing.
        with exporter.connect() as idle:
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert idle.recv(4096).startswith(b"HTTP/1.1 200")
            assert closed_by_peer(idle), "an idle kept-alive connection stayed open"
        assert exporter.get("/metrics") == 200


@pytest.mark.parametrize("mode", MODES)
def test_a_client_that_stops_reading_its_response_is_cut_off(
    mode: str, sqlite_db: Database, tmp_path: Path, pki: Pki
) -> None:
    """A scrape that asks for a body of megabytes and never reads it loses its connection after
    the idle timeout; before, it held a slot of the cap for as long as it liked."""
    many_jobs(sqlite_db.url, 10_000)  # a plain body of several MB: more than socket buffers hold
    flags = ("--web-idle-timeout", "1")
    with serving(sqlite_db, tmp_path, pki if mode == "tls" else None, *flags) as exporter:
        deadline = time.monotonic() + 30
        while exporter.get("/readyz") != 200:  # the first poll has read the 10k jobs
            assert time.monotonic() < deadline, exporter.output
            time.sleep(0.1)
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader that takes little
        raw.settimeout(10)
        raw.connect(("127.0.0.1", exporter.port))
        sock = (
            raw
            if exporter.client is None
            else exporter.client.wrap_socket(raw, server_hostname="localhost")
        )
        with sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            first = sock.recv(4096)
            head, _, body = first.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
            time.sleep(4)  # reads nothing: past the idle timeout and the next sweep
            received, ended = len(body), False
            sock.settimeout(5)
            try:
                while chunk := sock.recv(1 << 16):
                    received += len(chunk)
                ended = True  # end of file
            except TimeoutError:
                pass  # still open
            except OSError:
                ended = True  # reset, or a TLS connection cut without close_notify
        assert length > 4_500_000  # more than the kernel's send buffer takes (4 MiB at most)
        assert ended and received < length, (received, length)
        assert exporter.get("/metrics") == 200
    assert "took nothing of its response" in exporter.output


@pytest.mark.parametrize("mode", MODES)
def test_a_flood_of_idle_connections_leaves_scrapes_working(
    mode: str, sqlite_db: Database, tmp_path: Path, pki: Pki
) -> None:
    """300 silent or half-sent connections against a 256-descriptor limit, default settings."""
    tls = mode == "tls"
    with (
        serving(sqlite_db, tmp_path, pki if tls else None, nofile=256) as exporter,
        ExitStack() as held,
    ):
        for index in range(300):
            sock = held.enter_context(
                socket.create_connection(("127.0.0.1", exporter.port), timeout=10)
            )
            if index % 2:  # half of them start a request (or a TLS record) and stop
                sock.sendall(b"\x16\x03\x01" if tls else b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        statuses = [exporter.get("/metrics") for _ in range(3)]
        assert statuses == [200, 200, 200]
        assert exporter.get("/healthz") == 200
    assert "connection limit reached" in exporter.output
    assert "Too many open files" not in exporter.output


def test_connection_settings_by_flag_environment_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    defaults = load_config(db_url=url).settings
    assert (
        defaults.web_header_timeout,
        defaults.web_idle_timeout,
        defaults.web_max_connections,
    ) == (10.0, 60.0, 256)
    config = tmp_path / "exporter.yaml"
    config.write_text("web_header_timeout: 5\nweb_idle_timeout: 30\nweb_max_connections: 40\n")
    monkeypatch.setenv("JOBSTORE_EXPORTER_WEB_IDLE_TIMEOUT", "20")
    settings = load_config(config, db_url=url, web_max_connections=30).settings
    assert settings.web_header_timeout == 5  # file
    assert settings.web_idle_timeout == 20  # environment beats file
    assert settings.web_max_connections == 30  # flag beats both
