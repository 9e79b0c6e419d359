"""The web config file: TLS, client certificates, basic auth and response headers.

The file has the format of Prometheus' exporter-toolkit (``--web.config.file``), so the same file
works here and ``promtool check web-config`` checks it. Everything is validated when the file is
loaded, certificates included: a mistake becomes one :class:`ConfigError` line naming the key and
the fix, and ``serve`` exits 2 before it listens. Where Python's ``ssl`` module cannot do what a
setting asks (a list of curves, a client certificate that is required but not verified), the
setting is refused rather than quietly served differently.

Secrets: the bcrypt hashes are never printed (not in ``repr``, not in an error line, and the
logging filter scrubs them), and request passwords are neither logged nor kept (``basic_auth.py``
checks them). Building the TLS context, and rebuilding it on renewal, is ``tls.py``'s job.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from exporter.sidecar.serving.basic_auth import BasicAuth
from exporter.sidecar.serving.tls import (
    CIPHER_SUITES,
    CLIENT_AUTH_TYPES,
    CURVES,
    NEEDS_CA,
    TLS13_CIPHER_SUITES,
    TLS_VERSIONS,
    VERIFY_MODES,
    RenewingContext,
    SettingError,
    TLSSettings,
    build_context,
    fail,
)

# Only these headers, and for two of them only these values, as in the exporter-toolkit.
HEADERS: dict[str, tuple[str, ...]] = {
    "Content-Security-Policy": (),
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
}

_BCRYPT = re.compile(rb"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_MAKE_HASH = "make one with htpasswd -nBC 10 \"\" | tr -d ':\\n' (see docs/security.md)"

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
)
_HTTP_KEYS = ("http2", "headers")
# exporter-toolkit keys this exporter does not implement: refused, never silently ignored.
_UNSUPPORTED = {
    "rate_limit": "rate limiting is not supported; remove it (limit at a proxy if needed)",
    "basic_auth_excluded_paths": "not supported; only /healthz is open without basic auth",
    "tls_server_config.cert": "inline certificates are not supported; use cert_file",
    "tls_server_config.key": "inline keys are not supported; use key_file",
    "tls_server_config.client_ca": "inline CAs are not supported; use client_ca_file",
    "tls_server_config.client_allowed_sans": (
        "not supported; issue client certificates from a CA used only for scraping instead"
    ),
}


@dataclass(frozen=True, slots=True)
class WebConfig:
    """A validated web config file. ``users`` maps user names to bcrypt hashes (never shown)."""

    path: Path
    tls: TLSSettings | None = None
    http2: bool = True  # accepted for compatibility; aiohttp serves HTTP/1.1 only
    headers: tuple[tuple[str, str], ...] = ()
    users: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The bcrypt hashes: not passwords, but never printed either (scrubbed from logs)."""
        return tuple(hashed.decode("ascii") for _, hashed in self.users)

    def describe(self) -> str:
        """One line for the startup log; names no user and no file content."""
        tls = self.tls
        if tls is None:
            said = "TLS off"
        else:
            said = (
                f"TLS on ({tls.min_version}..{tls.max_version}, "
                f"client certificates: {tls.client_auth_type})"
            )
        if self.users:
            return f"{said}, basic auth for {len(self.users)} user(s) (/healthz open)"
        return f"{said}, no basic auth"

    def renewing_context(self) -> RenewingContext | None:
        """The TLS contexts for the listener, following renewals of the certificate files."""
        if self.tls is None:
            return None
        try:
            return RenewingContext(self.tls)
        except SettingError as exc:
            raise exc.config_error(self.path) from None

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server context for the certificates and policy of ``tls_server_config``."""
        if self.tls is None:
            return None
        try:
            return build_context(self.tls)
        except SettingError as exc:
            raise exc.config_error(self.path) from None

    def install(self, app: web.Application) -> None:
        """Add basic auth (outermost middleware) and the configured headers to ``app``."""
        if self.headers:
            headers = self.headers

            async def add_headers(_request: web.Request, response: web.StreamResponse) -> None:
                for name, value in headers:  # a handler's own value wins, as in the toolkit
                    response.headers.setdefault(name, value)

            app.on_response_prepare.append(add_headers)
        if self.users:
            app.middlewares.insert(0, BasicAuth(self.users).middleware)


# --- Loading -----------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice (two entries for one user, say), like Go's."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:
            fail("file", f"line {key_node.start_mark.line + 1}: a key must be a plain value")
        if duplicate:
            fail("file", f"key {key!r} given twice (line {key_node.start_mark.line + 1}); keep one")
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def load_web_config(path: Path) -> WebConfig:
    """Read and validate ``path``, certificates included; raise a one-line ConfigError."""
    try:
        config = _load(path)
    except SettingError as exc:
        raise exc.config_error(path) from None
    config.ssl_context()  # loads certificate, key and CA now rather than at the first client
    return config


def _load(path: Path) -> WebConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        fail("file", f"cannot read it: {reason or exc}; check --web-config-file")
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        # Never str(exc): its snippet of the offending line could be a password hash.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        fail("file", f"invalid YAML{where}: {getattr(exc, 'problem', None) or 'syntax error'}")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        fail("file", "expected a mapping with tls_server_config, http_server_config, ...")
    _check_keys(data, "", _TOP_KEYS)
    base = path.parent
    tls = _tls(data["tls_server_config"], base) if "tls_server_config" in data else None
    http2, headers = _http(data.get("http_server_config"))
    users = _users(data.get("basic_auth_users"))
    return WebConfig(path=path, tls=tls, http2=http2, headers=headers, users=users)


def _check_keys(section: dict[Any, Any], prefix: str, known: tuple[str, ...]) -> None:
    for key in section:
        name = f"{prefix}{key}"
        if name in _UNSUPPORTED:
            fail(name, _UNSUPPORTED[name])
        if key not in known:
            fail(name, f"unknown key; expected one of {', '.join(known)} (check the spelling)")


def _mapping(value: Any, key: str) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail(key, "expected a mapping of keys")
    return value


def _text(value: Any, key: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        fail(key, f"expected {what}")
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        fail(key, "expected true or false")
    return value


def _names(value: Any, key: str, known: Sequence[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        fail(key, "expected a list")
    for item in value:
        if item not in known:
            fail(key, f"unknown value {item!r}; expected any of {', '.join(known)}")
    return tuple(value)


def _file(value: Any, key: str, base: Path) -> Path:
    name = Path(_text(value, key, "a file name (relative to the web config file's directory)"))
    path = name if name.is_absolute() else base / name
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        fail(key, f"cannot read {path}: {exc.strerror or exc}")
    return path


def _tls(value: Any, base: Path) -> TLSSettings:
    prefix = "tls_server_config."
    section = _mapping(value, "tls_server_config")
    _check_keys(section, prefix, _TLS_KEYS)
    for required in ("cert_file", "key_file"):
        if section.get(required) is None:
            fail(
                f"{prefix}{required}",
                "not set; TLS needs both cert_file and key_file "
                "(or remove tls_server_config to serve plain HTTP)",
            )
    auth = section.get("client_auth_type") or "NoClientCert"
    if not isinstance(auth, str):
        fail(f"{prefix}client_auth_type", f"expected one of {', '.join(CLIENT_AUTH_TYPES)}")
    if auth in ("RequireAnyClientCert", "RequireClientCert"):
        fail(
            f"{prefix}client_auth_type",
            f"{auth} accepts a certificate nobody verified and Python's TLS cannot express it; "
            "use RequireAndVerifyClientCert with client_ca_file",
        )
    if auth not in VERIFY_MODES:
        fail(
            f"{prefix}client_auth_type",
            f"{auth!r} is not one of {', '.join(CLIENT_AUTH_TYPES)}",
        )
    ca_value = section.get("client_ca_file")
    if auth in NEEDS_CA and ca_value is None:
        fail(
            f"{prefix}client_ca_file",
            f"not set; client_auth_type {auth} verifies client certificates against it, "
            "so name the PEM file of the CA that issues them",
        )
    if ca_value is not None and auth == "NoClientCert":
        fail(
            f"{prefix}client_auth_type",
            "client_ca_file is set but client certificates are not asked for; "
            "set client_auth_type: RequireAndVerifyClientCert (or remove client_ca_file)",
        )
    versions = {}
    for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        version = section.get(key, default)
        if not isinstance(version, str) or version not in TLS_VERSIONS:
            fail(f"{prefix}{key}", f"{version!r} is not one of {', '.join(TLS_VERSIONS)}")
        versions[key] = version
    if TLS_VERSIONS[versions["min_version"]] > TLS_VERSIONS[versions["max_version"]]:
        fail(f"{prefix}min_version", "is above max_version; lower it or raise max_version")
    ciphers = _names(
        section.get("cipher_suites"),
        f"{prefix}cipher_suites",
        [*CIPHER_SUITES, *sorted(TLS13_CIPHER_SUITES)],
    )
    curves = _names(section.get("curve_preferences"), f"{prefix}curve_preferences", list(CURVES))
    if len(curves) > 1:
        fail(
            f"{prefix}curve_preferences",
            "Python's TLS can pin one curve but not order several; list one, or remove the key "
            "for the library's default set",
        )
    prefer = section.get("prefer_server_cipher_suites", True)
    return TLSSettings(
        cert_file=_file(section["cert_file"], f"{prefix}cert_file", base),
        key_file=_file(section["key_file"], f"{prefix}key_file", base),
        client_auth_type=auth,
        client_ca_file=(
            _file(ca_value, f"{prefix}client_ca_file", base) if ca_value is not None else None
        ),
        min_version=versions["min_version"],
        max_version=versions["max_version"],
        cipher_suites=ciphers,
        prefer_server_cipher_suites=_bool(prefer, f"{prefix}prefer_server_cipher_suites"),
        curve_preferences=curves,
    )


def _http(value: Any) -> tuple[bool, tuple[tuple[str, str], ...]]:
    prefix = "http_server_config."
    section = _mapping(value, "http_server_config")
    _check_keys(section, prefix, _HTTP_KEYS)
    http2 = _bool(section.get("http2", True), f"{prefix}http2")
    headers = []
    for name, header_value in _mapping(section.get("headers"), f"{prefix}headers").items():
        key = f"{prefix}headers.{name}"
        if name not in HEADERS:
            fail(key, f"this header cannot be configured; allowed: {', '.join(HEADERS)}")
        if not isinstance(header_value, str) or "\r" in header_value or "\n" in header_value:
            fail(key, "expected a one-line string")
        if header_value == "":
            continue  # blank means unset, as in the exporter-toolkit
        allowed = HEADERS[name]
        if allowed and header_value not in allowed:
            fail(key, f"{header_value!r} is not one of {', '.join(allowed)}")
        headers.append((name, header_value))
    return http2, tuple(headers)


def _users(value: Any) -> tuple[tuple[str, bytes], ...]:
    section = _mapping(value, "basic_auth_users")
    users = []
    for name, hashed in section.items():
        # Messages here name the user, never the value: it may be a hash or a pasted password.
        if not isinstance(name, str) or not name:
            fail("basic_auth_users", "user names must be non-empty strings; quote them")
        key = f"basic_auth_users.{name}"
        if ":" in name:
            fail(key, "a user name cannot contain ':' (Basic auth splits user and password there)")
        if not isinstance(hashed, str) or not _BCRYPT.fullmatch(hashed.encode("ascii", "replace")):
            fail(key, f"the value is not a bcrypt hash (never a plain password); {_MAKE_HASH}")
        users.append((name, hashed.encode("ascii")))
    return tuple(users)
