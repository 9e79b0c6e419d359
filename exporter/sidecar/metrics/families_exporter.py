"""The exporter's own families of ``/metrics``: its build, each source's polls, what it could
not decode or had to leave out, and its failed renders.

Declared as data (see ``table.py``); ``families.py`` puts them in body order.
"""

from __future__ import annotations

from exporter.sidecar.metrics import samples
from exporter.sidecar.metrics.table import EXPORTER, SOURCE, STORE, Family, flag

EXPORTER_STATIC: tuple[Family, ...] = (
    Family(
        "jobstore_exporter_build_info",
        "gauge",
        "Always 1; versions of the exporter and what it runs on",
        ("version", "python_version", "apscheduler_version", "sqlalchemy_version"),
        "exporter",
        EXPORTER,
        "always 1",
        once=samples.build_info,
    ),
    Family(
        "jobstore_exporter_poll_duration_seconds",
        "gauge",
        "Duration of the last poll of each source",
        SOURCE,
        "store",
        EXPORTER,
        "duration of the last poll; source = `jobs`, `history`, `heartbeats`, `backups`",
        per_store=samples.per_source(lambda status: status.duration),
    ),
    Family(
        "jobstore_exporter_source_up",
        "gauge",
        "1 if the last poll of the source succeeded, else 0",
        SOURCE,
        "store",
        EXPORTER,
        "1 if the last poll of that source succeeded, else 0 (for `jobs` the same as "
        "`apscheduler_up`, for `history` as `apscheduler_history_up`); alert rules use it to "
        "stay quiet about what a failing source can no longer tell",
        per_store=samples.per_source(lambda status: flag(status.ok)),
        addition=True,
    ),
    Family(
        "jobstore_exporter_last_poll_success_timestamp_seconds",
        "gauge",
        "When each source was last read successfully",
        SOURCE,
        "store",
        EXPORTER,
        "when that source was last read successfully",
        per_store=samples.per_source(lambda status: status.last_success),
    ),
    Family(
        "jobstore_exporter_poll_errors_total",
        "counter",
        "Failed polls of each source",
        SOURCE,
        "store",
        EXPORTER,
        "failed polls",
        per_store=samples.per_source(lambda status: status.errors_total),
    ),
    Family(
        "jobstore_exporter_undecodable_jobs",
        "gauge",
        "Rows whose job_state could not be decoded safely",
        STORE,
        "store",
        EXPORTER,
        "rows whose job_state could not be decoded safely",
        per_store=samples.store_value(lambda snap: snap.undecodable),
    ),
    Family(
        "jobstore_exporter_jobs_text_replaced",
        "gauge",
        "Jobs whose name, func or executor held characters no encoder accepts, shown as U+FFFD",
        STORE,
        "store",
        EXPORTER,
        "jobs whose `name`, `func` or `executor` held characters no encoder accepts (lone "
        "surrogates, which pickled text can carry); they are shown as U+FFFD "
        "(`\N{REPLACEMENT CHARACTER}`)",
        per_store=samples.text_replaced,
        addition=True,
    ),
    Family(
        "jobstore_exporter_jobs_excluded",
        "gauge",
        "Jobs left without per-job series by the include/exclude patterns or max_jobs",
        ("jobstore", "reason"),
        "store",
        EXPORTER,
        "jobs without per-job series; reason = `filter` (include/exclude patterns) or `limit` "
        "(`max_jobs`)",
        per_store=samples.by_reason(lambda snap: snap.excluded),
        addition=True,
    ),
    Family(
        "jobstore_exporter_history_invalid_rows_total",
        "counter",
        "History rows skipped as malformed (NULLs, unknown status, absurd duration...)",
        ("jobstore", "reason"),
        "store",
        EXPORTER,
        "history rows skipped as malformed, since the exporter started",
        per_store=samples.by_reason(lambda snap: snap.invalid_history_rows),
        addition=True,
    ),
    Family(
        "jobstore_exporter_poll_loop_restarts_total",
        "counter",
        "Times a store's poll loop failed unexpectedly and was started again",
        STORE,
        "store",
        EXPORTER,
        "times the store's poll loop failed unexpectedly (logged with its traceback) and was "
        "started again; any increase is a bug worth reporting",
        per_store=samples.store_value(lambda snap: snap.poll_loop_restarts),
        addition=True,
    ),
)
"""The exporter's own state at the last poll (static part)."""

RENDER: tuple[Family, ...] = (
    Family(
        "jobstore_exporter_render_errors_total",
        "counter",
        "Renders of a /metrics part that failed; the last good part is served meanwhile",
        ("part",),
        "exporter",
        EXPORTER,
        "renders of a part of the `/metrics` body that failed since the exporter started; part "
        "= `static` (what a poll changes) or `clock` (what the scrape time changes). Served in "
        "the clock part, so it is visible while the static part fails; see "
        "[Freshness](#freshness)",
        part="render",
        addition=True,
    ),
)
"""Counted by the body cache itself (``render.py`` gives the samples)."""
