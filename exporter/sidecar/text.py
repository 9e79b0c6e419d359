"""Text from the database made safe to serve: always encodable, and short enough for a label.

Pickled text is decoded with ``surrogatepass``, and SQLite stores whatever bytes an app wrote,
so a job's name can hold lone surrogates that no encoder accepts. One such character used to
make every render of ``/metrics`` fail. Such characters are replaced with U+FFFD (and the job is
counted) when the row is read, so every renderer can encode what it is given. The same cap that
keeps the ``schedule`` label short applies to ``name`` and ``executor``: a 1 MB name would
otherwise be repeated in every scrape.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MAX_LABEL", "capped", "decode_id", "encodable"]

#: The longest label value taken from a row (schedule text, name, executor), in characters.
MAX_LABEL: Final = 160

# The only code points a Python str can hold that UTF-8 cannot encode.
_SURROGATES: Final = re.compile("[\ud800-\udfff]")
REPLACEMENT: Final = "\ufffd"


def encodable(text: str) -> tuple[str, bool]:
    """``text`` with every lone surrogate replaced by U+FFFD, and whether any was."""
    if text.isascii():
        return text, False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub(REPLACEMENT, text), True
    return text, False


def capped(text: str, limit: int = MAX_LABEL) -> str:
    """At most ``limit`` characters; a cut text ends with ``...``."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decode_id(raw: object) -> tuple[str, bool]:
    """A job id read as bytes (SQLite keeps any bytes in a text column): the text, and whether
    it was valid UTF-8. Invalid bytes are shown as ``\\xNN`` escapes, which keeps ids distinct."""
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8"), True
        except UnicodeDecodeError:
            return raw.decode("utf-8", "backslashreplace"), False
    text, replaced = encodable(str(raw))
    return text, not replaced
