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
from datetime import UTC, datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from exporter.check import humanize_span, humanize_until
from exporter.web.paths import job_path

NOTHING = Markup('<span class="muted">—</span>')


def _finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("exporter.web", "templates"),
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
    if unix is None:
        return ""
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(seconds: float) -> str:
    return "just now" if seconds < 1 else f"{humanize_span(seconds)} ago"


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
        words = humanize_until(delta) if delta >= 0 else ago(-delta)
        text += f' <span class="muted">({words})</span>'
    return Markup(text)


def duration(seconds: float | None) -> Markup | str:
    if seconds is None:
        return NOTHING
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        minutes, rest = divmod(int(seconds), 60)
        return f"{minutes}m {rest:02d}s"
    hours, rest = divmod(int(seconds) // 60, 60)
    return f"{hours}h {rest:02d}m"


def size(value: float | None) -> str:
    return f"{value:,.0f} bytes" if value is not None else "—"


def percent(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "—"
