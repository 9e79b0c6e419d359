"""Jinja2 for the pages: templates beside this module, everything escaped by default.

Why templates: the status page had grown to ~300 lines of HTML built from strings, where every
database value had to be escaped by hand and one forgotten ``escape()`` was an injection. With
autoescaping, a value is escaped unless a template marks it safe, and the templates read as the
pages they draw. ``finalize`` escapes with :func:`html.escape` (``&quot;``, ``&#x27;``), the
same entities the hand-written page used, so the page's bytes did not change with the move;
``None`` renders as nothing.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from exporter.sidecar import wording
from exporter.sidecar.web.paths import job_path

if TYPE_CHECKING:
    from jinja2 import Environment

NOTHING = Markup('<span class="muted">—</span>')


def _finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


@cache
def environment() -> Environment:
    """Made at the first page asked for: Jinja2 adds about 7 MiB to the process, and a sidecar
    that is only ever scraped never needs it."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("exporter.sidecar.web", "templates"),
        autoescape=True,
        finalize=_finalize,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, duration=duration, size=size, ago=ago, utc=utc, percent=percent)
    env.globals.update(job_path=job_path, NOTHING=NOTHING)
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


# -- filters: each returns escaped Markup ------------------------------------------------------


def utc(unix: float | None) -> str:
    return wording.moment(unix, zone=True) if unix is not None else ""


def ago(seconds: float) -> str:
    return wording.ago(seconds)


def when(item: Mapping[str, Any], key: str, now: float, relative: bool = True) -> Markup:
    """``<time>`` with the UTC time, and how long ago / until when ``relative``."""
    iso, unix = item.get(key), item.get(f"{key}_unix")
    if iso is None or unix is None:
        return NOTHING
    # Built as one string (Markup.format per value is the dearest part of a 100-row table);
    # every part is worded from numbers, and the ISO text is escaped all the same.
    text = f'<time datetime="{html.escape(str(iso))}">{utc(unix)}</time>'
    if relative:
        delta = unix - now
        words = wording.until(delta) if delta >= 0 else wording.ago(-delta)
        text += f' <span class="muted">({words})</span>'
    return Markup(text)


def duration(seconds: float | None) -> Markup | str:
    return wording.run_duration(seconds) if seconds is not None else NOTHING


def size(value: float | None) -> str:
    return wording.size(value) if value is not None else "—"


def percent(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "—"
