"""A renewed TLS certificate is served without a restart, while Prometheus-like clients scrape;
a bad new pair keeps the previous certificate and says so in one log line."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from pki import Pki, issue_server, make_pki
from stores import write_jobs
from support import Database, free_port, stop, wait_for

KEEPING = "TLS: the changed certificate files do not load, keeping the previous certificate"


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    with make_pki() as made:
        yield made


class Scraper(threading.Thread):
    """GET /metrics in a loop, each on a new connection (a new handshake); notes what it saw."""

    def __init__(self, port: int, pki: Pki) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.context = pki.client()
        self.serials: list[int] = []
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            connection = http.client.HTTPSConnection(
                "127.0.0.1", self.port, context=self.context, timeout=10
            )
            try:
                connection.request("GET", "/metrics", headers={"Host": "localhost"})
                response = connection.getresponse()
                response.read()
                assert connection.sock is not None
                der = connection.sock.getpeercert(binary_form=True)
                assert der is not None
                if response.status != 200:
                    self.failures.append(f"status {response.status}")
                self.serials.append(x509.load_der_x509_certificate(der).serial_number)
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
            finally:
                connection.close()
            time.sleep(0.02)

    def last(self) -> int | None:
        return self.serials[-1] if self.serials else None


def test_renewed_certificate_is_served_without_restart(
    sqlite_db: Database, tmp_path: Path, pki: Pki
) -> None:
    write_jobs(sqlite_db.url)
    pki.place(tmp_path)
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    first = x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "serve", "--db-url", sqlite_db.url,
             "--listen-address", f"127.0.0.1:{port}", "--poll-interval", "1",
             "--web-config-file", str(web)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    scraper = Scraper(port, pki)
    try:
        wait_for(lambda: _answers(port, pki), what="the exporter over TLS")
        scraper.start()
        wait_for(lambda: scraper.last() == first, what="a scrape with the first certificate")

        # A renewal, written in place as a renewal tool writes it, while scrapes go on.
        renewed = issue_server(pki, cert, key).serial_number
        wait_for(lambda: scraper.last() == renewed, what="the renewed certificate")

        # A bad pair: a new certificate without its key. The renewed one stays, said once.
        said = log_path.read_text().count(KEEPING)
        spare = tmp_path / "spare"
        spare.mkdir()
        issue_server(pki, spare / "server.crt", spare / "server.key")
        _replace(cert, spare / "server.crt")
        seen = len(scraper.serials)
        wait_for(lambda: len(scraper.serials) > seen + 20, what="scrapes after the bad pair")
        assert set(scraper.serials[seen:]) == {renewed}
        assert log_path.read_text().count(KEEPING) == said + 1

        # Its key arrives: now the pair loads.
        _replace(key, spare / "server.key")
        latest = x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
        wait_for(lambda: scraper.last() == latest, what="the completed pair")
    finally:
        scraper.done.set()
        scraper.join(timeout=15)
        stop(proc)
    output = log_path.read_text()
    assert scraper.failures == [], (scraper.failures[:5], output)
    assert "TLS: loaded the renewed" in output
    assert "BEGIN" not in output  # no PEM content in the log


def _replace(target: Path, source: Path) -> None:
    """Swap ``target`` for a copy of ``source`` in one step, so no half-written file is seen."""
    temporary = target.with_suffix(".new")
    shutil.copy(source, temporary)
    os.replace(temporary, target)


def _answers(port: int, pki: Pki) -> bool:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=pki.client(), timeout=5)
    try:
        connection.request("GET", "/healthz", headers={"Host": "localhost"})
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
