"""The metric table (exporter/sidecar/metrics/families.py) against the golden list, the docs and a
scrape.

- The table and ``tests/metrics_golden.txt`` name the same families, types and labels, in the
  order of the body; a family added, renamed or relabelled in one and not the other fails here.
- Every metric of the public contract (``../shared/spec/contract.md``, when it is beside the
  clone) is in the golden list with its type and labels: an optional extra check, skipped with
  the reason without the contract, required under ``CI=true``.
- The reference tables of docs/metrics.md and the dashboards' series list
  (``mixin/lib/series.json``) are what ``python -m exporter.sidecar.metrics.docs`` writes, at
  the paths it writes by default.
- A real scrape of a real store serves only families of the golden list, with their labels.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from golden import GOLDEN_PATH, golden_families
from prometheus_client.parser import text_string_to_metric_families
from stores import write_jobs
from support import Database
from test_history_reader import History

from exporter.shared.tables import heartbeat_table
from exporter.sidecar.config import load_config
from exporter.sidecar.metrics import docs as metric_docs
from exporter.sidecar.metrics.families import FAMILIES
from exporter.sidecar.poller import StorePoller
from exporter.sidecar.serving.server import SIDECAR, create_app

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"


def _contract_path() -> Path | None:
    for candidate in (
        os.environ.get("JOBSTORE_EXPORTER_CONTRACT"),
        ROOT.parent / "shared" / "spec" / "contract.md",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def test_table_and_golden_list_agree() -> None:
    table = [(f.name, f.kind, f.labels) for f in FAMILIES]
    golden = [(g.name, g.type, g.labels) for g in golden_families().values()]
    assert table == golden, f"exporter/sidecar/metrics/families.py and {GOLDEN_PATH.name} differ"
    assert len({name for name, _, _ in table}) == len(table), "a family is declared twice"


def test_counters_are_named_as_queried() -> None:
    for family in FAMILIES:
        assert family.name.endswith("_total") == (family.kind == "counter"), family.name


def test_contract_metrics_are_in_the_golden_list() -> None:
    path = _contract_path()
    if path is None:
        reason = "../shared/spec/contract.md not beside the clone (or $JOBSTORE_EXPORTER_CONTRACT)"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: required)", pytrace=False)
        pytest.skip(reason)
    rows = re.findall(
        r"^\|\s*`([a-z_:][a-z0-9_:]*)`\s*\|\s*(\w+)\s*\|([^|]*)\|", path.read_text("utf-8"), re.M
    )
    assert len(rows) > 30, f"no metric tables read from {path}"
    golden = golden_families()
    for name, kind, labels in rows:
        assert name in golden, f"{name} (contract) is not in {GOLDEN_PATH.name}"
        wanted = {label.strip() for label in labels.split(",") if label.strip()}
        assert (golden[name].type, set(golden[name].labels)) == (kind, wanted), name


def test_docs_tables_are_generated_from_the_table() -> None:
    doc = ROOT / "docs" / "metrics.md"
    text = doc.read_text(encoding="utf-8")
    assert metric_docs.render(text) == text, "run python -m exporter.sidecar.metrics.docs"
    for family in FAMILIES:
        assert f"| `{family.name}`" in text, f"{family.name} missing from docs/metrics.md"


def test_metric_docs_rewrites_a_stale_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "metrics.md"
    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    stale.write_text(text.replace("| `apscheduler_up` |", "| `apscheduler_upp` |"), "utf-8")
    assert metric_docs.main(["--check", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert metric_docs.main([str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == text


def test_generated_files_are_up_to_date_at_their_default_paths(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert metric_docs.main(["--check"]) == 0, capsys.readouterr().err


def test_dashboards_filter_by_job_exactly_the_per_job_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = json.loads((ROOT / "mixin" / "lib" / "series.json").read_text(encoding="utf-8"))
    golden = golden_families()
    per_job = {name for name, family in golden.items() if "job_id" in family.labels}
    per_job.discard("apscheduler_backup_info")  # one per store: names the backup job's id
    histograms = {name for name, family in golden.items() if family.type == "histogram"}
    expanded = {
        f"{name}_{suffix}" if name in histograms else name
        for name in per_job
        for suffix in (("bucket", "sum", "count") if name in histograms else ("",))
    }
    assert set(listed["perJob"]) == expanded
    assert set(listed["noJobstore"]) == {
        name for name, family in golden.items() if "jobstore" not in family.labels
    }
    stale = tmp_path / "series.json"
    stale.write_text('{"perJob": []}\n', encoding="utf-8")
    doc = ROOT / "docs" / "metrics.md"
    assert metric_docs.main(["--check", str(doc), "--series", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert metric_docs.main([str(doc), "--series", str(stale)]) == 0
    assert json.loads(stale.read_text(encoding="utf-8")) == listed


def test_metric_docs_refuses_a_doc_without_a_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "metrics.md"
    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    doc.write_text(text.replace("<!-- metric-table: liveness -->", ""), "utf-8")
    assert metric_docs.main([str(doc)]) == 2
    err = capsys.readouterr().err
    assert "no table for section(s) liveness" in err and len(err.strip().splitlines()) == 1


@pytest.fixture
async def scrape(sqlite_db: Database, tmp_path: Path) -> AsyncIterator[str]:
    """One /metrics body of a store where every kind of family has something to say."""
    write_jobs(sqlite_db.url, pause=("report_gen",))
    history = History(sqlite_db)
    history.insert("cleanup_temp", "success", 0, 0.2)
    history.insert("database_backup", "failed", 10, 13, error_message="boom")
    with sqlite_db.engine().begin() as conn:
        table = heartbeat_table(sa.MetaData())
        table.create(conn, checkfirst=True)
        seen = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1)
        conn.execute(
            table.insert().values(
                scheduler_id="host:1", host="host", pid=1, state="running", last_seen=seen
            )
        )
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "app_20260101T020000Z.sql").write_bytes(b"x")
    config = load_config(db_url=sqlite_db.url, poll_interval=3600, backup_dir=str(backups))
    pollers = [StorePoller(store) for store in config.stores]
    server = TestServer(create_app(config, pollers))
    await server.start_server()
    try:
        history.insert("cleanup_temp", "failed", 20, 21)
        for poller in pollers:
            poller.poll()
        await server.app[SIDECAR].bodies.refresh()
        async with ClientSession() as session, session.get(server.make_url("/metrics")) as resp:
            assert resp.status == 200
            yield await resp.text()
    finally:
        await server.close()


async def test_a_scrape_serves_the_golden_families(scrape: str) -> None:
    golden = golden_families()
    served = {}
    for family in text_string_to_metric_families(scrape):
        if family.name.startswith("process_"):
            continue  # prometheus_client's own
        name = family.name + ("_total" if family.type == "counter" else "")
        assert name in golden, f"{name} is served but not in {GOLDEN_PATH.name}"
        assert family.type == golden[name].type, name
        for sample in family.samples:
            labels = set(sample.labels) - ({"le"} if family.type == "histogram" else set())
            assert labels == set(golden[name].labels), (name, sample)
        served[name] = len(family.samples)
    assert list(served) == list(golden), "the body's families and their order"
    assert served["apscheduler_job_info"] == 3 and served["apscheduler_scheduler_running"] == 1
