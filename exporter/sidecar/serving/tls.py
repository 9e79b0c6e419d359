"""TLS for the listener: the server context built from ``tls_server_config``, and rebuilt when
its files change.

Certificates are renewed in place (certbot, cert-manager, a cron job), and the exporter-toolkit
reads them again per handshake, so a renewal should need no restart. :class:`RenewingContext`
gives the listener the context for each handshake; before each it compares the identity of the
certificate, key and client CA files (inode, size, modification time) with what it loaded, and when
they differ it builds a complete new context, leaving connections already open as they are. A new
pair that does not load (a half-written renewal, a key from another certificate) keeps the previous
context and logs one line, once per change of the files; the next change is tried again.
"""

from __future__ import annotations

import logging
import os
import ssl
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from exporter.sidecar.config import ConfigError

log = logging.getLogger(__name__)

CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
# RequestClientCert asks for a certificate and neither requires nor verifies it: the access policy
# is that of NoClientCert, which is how Python's ssl module can express it.
VERIFY_MODES = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
NEEDS_CA = ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's names (crypto/tls CipherSuites) -> OpenSSL's, for TLS 1.2 and older.
CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# TLS 1.3 suites are not configurable (in Go either): accepted and left to the library.
TLS13_CIPHER_SUITES = frozenset(
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
)
CURVES = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """``tls_server_config`` with paths made absolute to the web config file's directory."""

    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()


class SettingError(Exception):
    """A problem with one key of the web config file: the key path and the message."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message

    def config_error(self, path: Path) -> ConfigError:
        where = "" if self.key == "file" else f"{self.key}: "
        return ConfigError(f"web config file {path}: {where}{self.message}")


def fail(key: str, message: str) -> NoReturn:
    raise SettingError(key, message)


def build_context(tls: TLSSettings) -> ssl.SSLContext:
    """A server context for ``tls``, its files read now; SettingError names the key at fault."""
    prefix = "tls_server_config."
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():  # TLS10/TLS11 are deprecated, and asked for explicitly
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = TLS_VERSIONS[tls.min_version]
        context.maximum_version = TLS_VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    older = [CIPHER_SUITES[name] for name in tls.cipher_suites if name in CIPHER_SUITES]
    if older:
        try:
            context.set_ciphers(":".join(older))
        except ssl.SSLError:
            fail(f"{prefix}cipher_suites", "none of these suites is available in this OpenSSL")
    if tls.curve_preferences:
        try:
            context.set_ecdh_curve(CURVES[tls.curve_preferences[0]])
        except (ValueError, ssl.SSLError):
            fail(f"{prefix}curve_preferences", "this curve is not available in this OpenSSL")

    encrypted = False

    def no_passphrase() -> bytes:
        nonlocal encrypted
        encrypted = True
        return b""

    try:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=no_passphrase)
    except (ssl.SSLError, OSError) as exc:
        if encrypted:
            fail(
                f"{prefix}key_file",
                f"{tls.key_file} is encrypted; give a key without a passphrase "
                "(openssl pkey -in KEY -out KEY.plain) and protect it by file permissions",
            )
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or "unreadable"
        fail(
            f"{prefix}cert_file",
            f"cannot load {tls.cert_file} with key {tls.key_file} ({reason}); both must be PEM "
            "and the key must belong to the certificate",
        )
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or "no PEM certificate in it"
            fail(f"{prefix}client_ca_file", f"cannot load {tls.client_ca_file} ({reason})")
        if context.cert_store_stats()["x509"] == 0:
            fail(f"{prefix}client_ca_file", f"no certificate in {tls.client_ca_file}")
    context.verify_mode = VERIFY_MODES[tls.client_auth_type]
    return context


FileStamp = tuple[tuple[int, int, int] | None, ...]


def _stamp(tls: TLSSettings) -> FileStamp:
    """What identifies the current content of the files without reading them."""
    stamps: list[tuple[int, int, int] | None] = []
    for path in (tls.cert_file, tls.key_file, tls.client_ca_file):
        if path is None:
            continue
        try:
            st = os.stat(path)
        except OSError:
            stamps.append(None)
        else:
            stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(stamps)


class RenewingContext:
    """The context for the next handshake, rebuilt when the certificate files change."""

    def __init__(self, tls: TLSSettings) -> None:
        self._tls = tls
        self._stamp = _stamp(tls)
        self._context = build_context(tls)
        self._failed: FileStamp | None = None

    def current(self) -> ssl.SSLContext:
        stamp = _stamp(self._tls)
        if stamp != self._stamp and stamp != self._failed:
            self._reload(stamp)
        return self._context

    def _reload(self, stamp: FileStamp) -> None:
        try:
            context = build_context(self._tls)
        except SettingError as exc:
            self._failed = stamp  # said once; the next change of the files is tried again
            log.error(
                "TLS: the changed certificate files do not load, keeping the previous "
                "certificate: %s: %s",
                exc.key,
                exc.message,
            )
            return
        self._context, self._stamp, self._failed = context, stamp, None
        log.info(
            "TLS: loaded the renewed certificate %s; new connections use it", self._tls.cert_file
        )
