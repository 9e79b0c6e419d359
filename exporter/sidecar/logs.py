"""Logging: one readable line per event, with secrets scrubbed from every record.

The scrubbing filter is a last line of defence: messages are already built from redacted URLs,
but a driver's error text or a third-party log line could still carry a password.
"""

from __future__ import annotations

import logging

from exporter.sidecar.db import scrub


class ScrubSecrets(logging.Filter):
    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = scrub(record.getMessage(), self.secrets)
            record.args = None
            if record.exc_info:
                record.exc_text = scrub(
                    logging.Formatter().formatException(record.exc_info), self.secrets
                )
                record.exc_info = None
        return True


def setup_logging(level: str = "info", secrets: tuple[str, ...] = ()) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ScrubSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log is off; its server errors still come through this handler.
    logging.getLogger("apscheduler").setLevel(max(root.level, logging.INFO))


def add_secrets(secrets: tuple[str, ...]) -> None:
    """Scrub more secrets from now on (a reload may bring a new password)."""
    for handler in logging.getLogger().handlers:
        for existing in handler.filters:
            if isinstance(existing, ScrubSecrets):
                existing.secrets = tuple(dict.fromkeys((*existing.secrets, *secrets)))
