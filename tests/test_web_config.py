"""The web config file: TLS, client certificates, basic auth and headers, over real sockets.

Certificates are made here, per test session, with the ``cryptography`` package: nothing secret
is committed. The end-to-end tests run the installed ``jobstore-exporter serve`` with the example
files of ``examples/web-config/`` placed beside freshly made certificates, and talk to it with
Python's own TLS client.
"""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import yaml
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from pki import Pki, make_pki
from stores import write_jobs
from support import Database, free_port, need_server, stop

from exporter.sidecar.config import ConfigError, load_config
from exporter.sidecar.poller import StorePoller
from exporter.sidecar.serving import basic_auth
from exporter.sidecar.serving.basic_auth import BasicAuth, parse_basic
from exporter.sidecar.serving.server import create_app
from exporter.sidecar.serving.web_config import WebConfig, load_web_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "web-config"
DEMO_USER = "prometheus"
DEMO_PASSWORD = "jobstore-demo-password"  # documented in the example and docs/security.md
CI_PROMTOOL = "promtool not installed (Debian package `prometheus`)"


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    with make_pki() as made:
        yield made


def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


def _example(name: str, pki: Pki, directory: Path) -> Path:
    """An example web config copied into ``directory`` beside the certificates it names."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    shutil.copy(EXAMPLES / name, target)
    pki.place(directory)
    return target


# --- A real `serve` over TLS -------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def get(
    port: int,
    path: str,
    context: ssl.SSLContext,
    *,
    auth: tuple[str, str] | None = None,
) -> Response:
    """One HTTPS GET on a fresh connection; TLS failures raise."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    headers = {}
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        connection.request("GET", path, headers=headers)
        resp = connection.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    finally:
        connection.close()


# What a client sees when the server refuses its TLS: an alert, a reset or a closed connection.
REFUSED = (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError)


@dataclass
class Served:
    port: int
    log_path: Path
    output: str = ""


@contextmanager
def serving(db_url: str, web_config: Path, ready: ssl.SSLContext, *extra: str) -> Iterator[Served]:
    """Run `jobstore-exporter serve --web-config-file`; ready once /healthz answers over TLS.

    After the block, ``output`` holds everything the process printed.
    """
    port = free_port()
    log_path = web_config.parent / f"serve-{port}.log"
    command = [
        sys.executable, "-m", "exporter", "serve", "--listen-address", f"127.0.0.1:{port}",
        "--poll-interval", "1", "--db-url", db_url, "--web-config-file", str(web_config), *extra,
    ]  # fmt: skip
    served = Served(port, log_path)
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if get(port, "/healthz", ready).status == 200:
                    break
            except REFUSED:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise AssertionError(f"exporter did not come up:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield served
    finally:
        stop(proc)
        served.output = log_path.read_text()


# --- promtool and the example files ------------------------------------------------------------


@pytest.mark.parametrize("name", ["web-config.yml", "web-config-mtls.yml"])
def test_promtool_accepts_the_examples(name: str, pki: Pki, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        need_server(CI_PROMTOOL)
    path = _example(name, pki, tmp_path)
    proc = subprocess.run(
        [str(promtool), "check", "web-config", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    load_web_config(path)  # and so do we


def test_promtool_rejects_what_we_reject(pki: Pki, tmp_path: Path) -> None:
    """Our loader and promtool agree on a hash that is not bcrypt and an unknown key."""
    promtool = shutil.which("promtool")
    if promtool is None:
        need_server(CI_PROMTOOL)
    pki.place(tmp_path)
    for text in (
        "basic_auth_users:\n  alice: not-a-hash\n",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cert_fil: x\n",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: Sometimes\n",
    ):
        path = tmp_path / "bad.yml"
        path.write_text(text)
        proc = subprocess.run(
            [str(promtool), "check", "web-config", str(path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode != 0, text
        with pytest.raises(ConfigError):
            load_web_config(path)


def test_example_hash_is_of_the_documented_demo_password() -> None:
    data = yaml.safe_load((EXAMPLES / "web-config.yml").read_text())
    hashed = data["basic_auth_users"][DEMO_USER]
    assert bcrypt.checkpw(DEMO_PASSWORD.encode(), hashed.encode())
    assert DEMO_PASSWORD in (EXAMPLES / "web-config.yml").read_text()
    assert DEMO_PASSWORD in (ROOT / "docs" / "security.md").read_text()


def test_no_certificate_or_key_is_committed() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "--", "examples/web-config"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert "examples/web-config/web-config.yml" in tracked
    assert not [name for name in tracked if name.endswith((".crt", ".key", ".pem", ".csr"))]


# --- End to end --------------------------------------------------------------------------------


def test_https_with_basic_auth(sqlite_db: Database, pki: Pki, tmp_path: Path) -> None:
    write_jobs(sqlite_db.url)
    config = _example("web-config.yml", pki, tmp_path / "web")
    hashed = yaml.safe_load(config.read_text())["basic_auth_users"][DEMO_USER]
    trust = pki.client()
    right = (DEMO_USER, DEMO_PASSWORD)
    with serving(sqlite_db.url, config, trust, "--log-level", "debug") as served:
        port = served.port
        open_health = get(port, "/healthz", trust)
        assert open_health.status == 200
        assert open_health.headers["X-Content-Type-Options"] == "nosniff"

        for path in ("/metrics", "/readyz", "/", "/api/status", "/no-such-page"):
            anonymous = get(port, path, trust)
            assert anonymous.status == 401, path
            assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="jobstore-exporter"'
            assert anonymous.headers["X-Frame-Options"] == "deny"
            assert b"apscheduler" not in anonymous.body
        for auth in ((DEMO_USER, "wrong"), ("nobody", DEMO_PASSWORD), (DEMO_USER, "")):
            refused = get(port, "/metrics", trust, auth=auth)
            assert refused.status == 401
            assert refused.headers["WWW-Authenticate"] == 'Basic realm="jobstore-exporter"'

        for _ in range(3):  # the first check pays bcrypt; the others hit the cache
            metrics = get(port, "/metrics", trust, auth=right)
            assert metrics.status == 200
            assert b"apscheduler_jobs{" in metrics.body
        for path in ("/", "/api/status"):
            assert get(port, path, trust, auth=right).status == 200, path
        page = get(port, "/", trust, auth=right)
        assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
        deadline = time.monotonic() + 30
        while get(port, "/readyz", trust, auth=right).status != 200:
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.2)

        # The same port in plain HTTP gets no answer at all, let alone metrics.
        with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
        # And a client that does not trust the server's CA does not connect.
        with pytest.raises(ssl.SSLCertVerificationError):
            get(port, "/healthz", ssl.create_default_context())
    output = served.output
    assert f"serving metrics on https://127.0.0.1:{port}/metrics" in output
    assert "basic auth for 1 user(s)" in output
    assert DEMO_PASSWORD not in output
    assert hashed not in output
    assert "Traceback" not in output


def test_mutual_tls(sqlite_db: Database, pki: Pki, tmp_path: Path) -> None:
    write_jobs(sqlite_db.url)
    config = _example("web-config-mtls.yml", pki, tmp_path / "web")
    with serving(sqlite_db.url, config, pki.client(cert="client")) as served:
        port = served.port
        ok = get(port, "/metrics", pki.client(cert="client"))
        assert ok.status == 200 and b"apscheduler_up" in ok.body
        assert ok.headers["Strict-Transport-Security"] == "max-age=31536000"
        with pytest.raises(REFUSED):
            get(port, "/metrics", pki.client())  # no client certificate
        with pytest.raises(REFUSED):
            get(port, "/healthz", pki.client())  # not even the health check
        with pytest.raises(REFUSED):
            get(port, "/metrics", pki.client(cert="stranger"))  # signed by another CA
        # The example asks for TLS 1.3 at least.
        with pytest.raises(ssl.SSLError):
            get(port, "/metrics", pki.client(cert="client", max_tls12=True))
    assert f"serving metrics on https://127.0.0.1:{port}/metrics" in served.output


def test_min_version_tls13_refuses_a_tls12_client(
    sqlite_db: Database, pki: Pki, tmp_path: Path
) -> None:
    pki.place(tmp_path)
    config = tmp_path / "web.yml"
    config.write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  min_version: TLS13\n"
    )
    with serving(sqlite_db.url, config, pki.client()) as served:
        assert get(served.port, "/metrics", pki.client()).status == 200
        with pytest.raises(ssl.SSLError):
            get(served.port, "/metrics", pki.client(max_tls12=True))
        # The same client is fine once the server allows TLS 1.2.
    config.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    with serving(sqlite_db.url, config, pki.client()) as served:
        assert get(served.port, "/metrics", pki.client(max_tls12=True)).status == 200


# --- Invalid web configs: exit 2, one line, nothing secret --------------------------------------

SECRET_PASSWORD = "Plain-Text-Pa55word"
SECRET_HASH = "$2b$04$abcdefghijklmnopqrstuuJ5d9zGtPi1vT4c0xq1nq3rXo8bPgE3m"
CERTS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"

INVALID = {
    "unknown key": (CERTS + "  cert_fil: x\n", "tls_server_config.cert_fil: unknown key"),
    "unknown top-level key": ("basic_auth_user: {}\n", "basic_auth_user: unknown key"),
    "bad client_auth_type": (
        CERTS + "  client_auth_type: Sometimes\n",
        "tls_server_config.client_auth_type: 'Sometimes' is not one of NoClientCert",
    ),
    "verification without a CA": (
        CERTS + "  client_auth_type: RequireAndVerifyClientCert\n",
        "tls_server_config.client_ca_file: not set",
    ),
    "missing cert file": (
        "tls_server_config:\n  cert_file: nowhere.crt\n  key_file: server.key\n",
        "tls_server_config.cert_file: cannot read",
    ),
    "unreadable key": (
        "tls_server_config:\n  cert_file: server.crt\n  key_file: .\n",
        "tls_server_config.key_file: cannot read",
    ),
    "key of another certificate": (
        "tls_server_config:\n  cert_file: server.crt\n  key_file: client-ca.key\n",
        "tls_server_config.cert_file: cannot load",
    ),
    "plain password instead of a hash": (
        f"basic_auth_users:\n  alice: {SECRET_PASSWORD}\n",
        "basic_auth_users.alice: the value is not a bcrypt hash",
    ),
    "truncated hash": (
        f"basic_auth_users:\n  alice: '{SECRET_HASH[:-5]}'\n",
        "basic_auth_users.alice: the value is not a bcrypt hash",
    ),
    "min above max": (
        CERTS + "  min_version: TLS13\n  max_version: TLS12\n",
        "tls_server_config.min_version: is above max_version",
    ),
    "header not allowed": (
        "http_server_config:\n  headers:\n    Set-Cookie: a=b\n",
        "http_server_config.headers.Set-Cookie: this header cannot be configured",
    ),
    "invalid YAML": (
        f"basic_auth_users:\n  alice: {SECRET_HASH}\n  bob [\n",
        "invalid YAML at line",
    ),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_web_config_exits_2_with_one_line(case: str, pki: Pki, tmp_path: Path) -> None:
    text, expected = INVALID[case]
    pki.place(tmp_path)
    shutil.copy(pki.directory / "client.key", tmp_path / "client-ca.key")
    path = tmp_path / "web.yml"
    path.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "serve", "--db-url", f"sqlite:///{tmp_path}/x.sqlite",
         "--listen-address", f"127.0.0.1:{free_port()}", "--web-config-file", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"jobstore-exporter: config error: web config file {path}: ")
    assert expected in lines[0]
    assert proc.stdout == ""
    for secret in (SECRET_PASSWORD, SECRET_HASH, SECRET_HASH[:-5]):
        assert secret not in proc.stderr


def test_missing_web_config_file_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "serve", "--db-url", f"sqlite:///{tmp_path}/x.sqlite",
         "--web-config-file", str(tmp_path / "absent.yml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"jobstore-exporter: config error: web config file {tmp_path / 'absent.yml'}: "
        "cannot read it: No such file or directory; check --web-config-file"
    ]


# --- The loader, in process --------------------------------------------------------------------


def _load_text(tmp_path: Path, text: str) -> WebConfig:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return load_web_config(path)


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        _load_text(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_relative_files_are_relative_to_the_web_config(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    pki.place(tmp_path / "conf")
    path = tmp_path / "conf" / "web.yml"
    path.write_text(CERTS)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # not where the certificates are
    try:
        config = load_web_config(Path("conf/web.yml"))
    finally:
        os.chdir(cwd)
    assert config.tls is not None
    assert config.tls.cert_file == Path("conf/server.crt")
    absolute = tmp_path / "abs.yml"
    absolute.write_text(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
    )
    assert load_web_config(absolute).scheme == "https"


def test_empty_file_is_plain_http_without_auth(tmp_path: Path) -> None:
    config = _load_text(tmp_path, "")
    assert (config.tls, config.users, config.headers, config.scheme) == (None, (), (), "http")
    assert config.ssl_context() is None


def test_settings_are_applied_to_the_context(pki: Pki, tmp_path: Path) -> None:
    pki.place(tmp_path)
    config = _load_text(
        tmp_path,
        CERTS + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: client-ca.crt\n"
        "  min_version: TLS12\n  max_version: TLS12\n"
        "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n"
        "  curve_preferences: [CurveP384]\n  prefer_server_cipher_suites: false\n",
    )
    context = config.ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_OPTIONAL
    assert context.minimum_version == context.maximum_version == ssl.TLSVersion.TLSv1_2
    assert not context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 == ["ECDHE-ECDSA-AES256-GCM-SHA384"]
    required = _load_text(
        tmp_path,
        CERTS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.crt\n",
    ).ssl_context()
    assert required is not None and required.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "expected a mapping"),
        ("rate_limit: {burst: 1}\n", "rate_limit: rate limiting is not supported"),
        (CERTS + "  client_allowed_sans: [a]\n", "client_allowed_sans: not supported"),
        (CERTS + "  client_auth_type: RequireAnyClientCert\n", "use RequireAndVerifyClientCert"),
        (CERTS + "  client_ca_file: client-ca.crt\n", "client certificates are not asked for"),
        (CERTS + "  min_version: TLS14\n", "'TLS14' is not one of TLS10, TLS11, TLS12, TLS13"),
        (CERTS + "  cipher_suites: [RC4]\n", "unknown value 'RC4'"),
        (CERTS + "  curve_preferences: [X25519, CurveP256]\n", "can pin one curve"),
        (CERTS + "  prefer_server_cipher_suites: maybe\n", "expected true or false"),
        ("tls_server_config: {}\n", "tls_server_config.cert_file: not set"),
        ("tls_server_config:\n  min_version: TLS13\n", "tls_server_config.cert_file: not set"),
        ("tls_server_config:\n  cert_file: server.crt\n", "key_file: not set"),
        ("http_server_config:\n  http2: 1\n", "http2: expected true or false"),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
            "'allow' is not one of deny, sameorigin",
        ),
        ("basic_auth_users:\n  'a:b': x\n", "cannot contain ':'"),
        ("basic_auth_users:\n  123: x\n", "user names must be non-empty strings"),
        (f"basic_auth_users:\n  a: '{SECRET_HASH}'\n  a: '{SECRET_HASH}'\n", "'a' given twice"),
        ("basic_auth_users:\n  a: $2b$03$" + "a" * 53 + "\n", "not a bcrypt hash"),
    ],
)
def test_loader_errors_name_the_key(pki: Pki, tmp_path: Path, text: str, expected: str) -> None:
    pki.place(tmp_path)
    message = _error(tmp_path, text)
    assert expected in message
    assert message.startswith(f"web config file {tmp_path / 'web.yml'}: ")
    assert SECRET_HASH not in message


def test_hashes_never_show_in_repr_or_errors(tmp_path: Path) -> None:
    hashed = _hash(SECRET_PASSWORD)
    config = _load_text(tmp_path, f"basic_auth_users:\n  alice: '{hashed}'\n")
    assert hashed not in repr(config)
    assert config.secrets == (hashed,)
    assert hashed not in config.describe()


def test_all_bcrypt_variants_are_accepted(tmp_path: Path) -> None:
    hashed = _hash("pw")
    for prefix in ("$2a$", "$2b$", "$2y$"):
        config = _load_text(tmp_path, f"basic_auth_users:\n  a: '{prefix}{hashed[4:]}'\n")
        assert config.users[0][1].startswith(prefix.encode())


# --- Basic auth, in process --------------------------------------------------------------------


def _header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_parse_basic() -> None:
    assert parse_basic(_header("u", "p:w")) == (b"u", b"p:w")
    assert parse_basic("basic " + base64.b64encode(b"u:").decode()) == (b"u", b"")
    for bad in (
        None,
        "",
        "Bearer abc",
        "Basic !!!",
        "Basic " + base64.b64encode(b"nocolon").decode(),
    ):
        assert parse_basic(bad) is None


async def test_successes_are_cached_failures_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = basic_auth._bcrypt_matches

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(basic_auth, "_bcrypt_matches", counting)
    auth = BasicAuth([("alice", _hash("right").encode()), ("bob", _hash("other").encode())])
    assert await auth.check(_header("alice", "right"))
    assert await auth.check(_header("alice", "right"))
    assert len(calls) == 1  # the second time came from the cache
    assert not await auth.check(_header("alice", "wrong"))
    assert not await auth.check(_header("alice", "wrong"))
    assert len(calls) == 3  # failures are checked every time
    assert not await auth.check(_header("mallory", "right"))  # unknown: still a bcrypt check
    assert len(calls) == 4
    assert not await auth.check(_header("bob", "right"))  # alice's password is not bob's
    assert await auth.check(_header("bob", "other"))
    # The cache holds digests, never a password.
    assert all(len(key) == 32 for key in auth._ok)
    assert all(b"right" not in key and b"other" not in key for key in auth._ok)


async def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = basic_auth._bcrypt_matches

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(basic_auth, "_bcrypt_matches", counting)
    users = [(name, _hash(f"{name}-pw").encode()) for name in ("alice", "bob", "carol")]
    auth = BasicAuth(users, cache_size=2)
    for name, _ in users:
        assert await auth.check(_header(name, f"{name}-pw"))
    assert len(auth._ok) == 2
    assert await auth.check(_header("carol", "carol-pw"))
    assert len(calls) == 3  # carol was still cached
    assert await auth.check(_header("alice", "alice-pw"))
    assert len(calls) == 4  # alice, the oldest, had been dropped


async def test_long_passwords_are_cut_at_72_bytes_like_bcrypt_everywhere() -> None:
    long = "x" * 80
    auth = BasicAuth([("alice", bcrypt.hashpw(long[:72].encode(), bcrypt.gensalt(4)))])
    assert await auth.check(_header("alice", long))
    assert not await auth.check(_header("alice", "x" * 71))


async def test_app_protects_every_path_but_healthz(sqlite_db: Database, tmp_path: Path) -> None:
    write_jobs(sqlite_db.url)
    web = _load_text(
        tmp_path,
        f"basic_auth_users:\n  alice: '{_hash('pw')}'\n"
        "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
        "    Content-Security-Policy: default-src 'self'\n    X-XSS-Protection: ''\n",
    )
    config = load_config(db_url=sqlite_db.url, poll_interval=3600)
    pollers = [StorePoller(store) for store in config.stores]
    server = TestServer(create_app(config, pollers, web))
    await server.start_server()
    try:
        async with ClientSession() as session:
            for path in ("/metrics", "/readyz", "/", "/api/status", "/anything"):
                async with session.get(server.make_url(path)) as resp:
                    assert resp.status == 401, path
                    assert resp.headers["WWW-Authenticate"] == 'Basic realm="jobstore-exporter"'
                    assert resp.headers["X-Content-Type-Options"] == "nosniff"
                    assert "X-XSS-Protection" not in resp.headers  # blank means unset
            async with session.get(server.make_url("/healthz")) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Security-Policy"] == "default-src 'self'"
            headers = {"Authorization": _header("alice", "pw")}
            async with session.get(server.make_url("/metrics"), headers=headers) as resp:
                assert resp.status == 200
            async with session.get(server.make_url("/"), headers=headers) as resp:
                assert resp.status == 200
                # The status page keeps its own, stricter policy.
                assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
            async with session.get(server.make_url("/anything"), headers=headers) as resp:
                assert resp.status == 404
    finally:
        await server.close()


def test_tls_port_answers_nothing_to_plain_http(pki: Pki, tmp_path: Path) -> None:
    """A raw plain-text request to the TLS listener gets no HTTP response."""
    pki.place(tmp_path)
    config = _load_text(tmp_path, CERTS)
    context = config.ssl_context()
    assert context is not None
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    with server, socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        conn, _ = server.accept()
        client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        with conn, pytest.raises(ssl.SSLError):
            context.wrap_socket(conn, server_side=True)


def test_encrypted_key_is_refused_without_a_prompt(pki: Pki, tmp_path: Path) -> None:
    pki.place(tmp_path)
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), password=None)
    (tmp_path / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    message = _error(tmp_path, CERTS)
    assert "tls_server_config.key_file:" in message and "is encrypted" in message
