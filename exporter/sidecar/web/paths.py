"""URLs of the pages, shared by the models, the templates and the docs' examples.

Job ids and store names are data from the database: any character may appear (``/``, quotes,
newlines), so each is percent-encoded as one path segment.
"""

from __future__ import annotations

from urllib.parse import quote


def job_path(jobstore: str, job_id: str) -> str:
    """``/jobs/{jobstore}/{job_id}``, each part one encoded segment."""
    return f"/jobs/{quote(jobstore, safe='')}/{quote(job_id, safe='')}"


def job_api_path(jobstore: str, job_id: str) -> str:
    return f"/api{job_path(jobstore, job_id)}"


def runs_api_path(jobstore: str, job_id: str) -> str:
    return f"{job_api_path(jobstore, job_id)}/runs"
