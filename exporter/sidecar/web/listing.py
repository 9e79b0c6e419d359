"""The status page's job list: the filter (``?q=``) and its pages (``?page=``, ``?per_page=``).

Pure: which jobs a page shows and the links to its neighbours, from the snapshot's jobs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

from exporter.sidecar.snapshot import JobView

PER_PAGE = 50


def paginate(
    jobs: Sequence[JobView], query: str, page: int, per_page: int, jobstore: str
) -> tuple[Sequence[JobView], dict[str, Any]]:
    """The jobs matching ``query`` (case-insensitive, in id or name) on ``page``; and the pager:
    counts and the links to the neighbouring pages (which keep the filter)."""
    needle = query.casefold()
    matching = (
        [job for job in jobs if needle in job.id.casefold() or needle in job.name.casefold()]
        if needle
        else jobs
    )
    pages = max(1, math.ceil(len(matching) / per_page))
    page = min(page, pages)
    start = (page - 1) * per_page
    visible = matching[start : start + per_page]

    def link(number: int) -> str:
        params: dict[str, Any] = {"page": number}
        if query:
            params["q"] = query
        if per_page != PER_PAGE:
            params["per_page"] = per_page
        return f"/?{urlencode(params)}#store-{quote(jobstore, safe='')}"

    return visible, {
        "filter": query,
        "page": page,
        "pages": pages,
        "matching": len(matching),
        "first": start + 1 if visible else 0,
        "last": start + len(visible),
        "previous": link(page - 1) if page > 1 else None,
        "next": link(page + 1) if page < pages else None,
    }
