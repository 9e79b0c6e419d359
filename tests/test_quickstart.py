"""The several-stores quick start of docs/configuration.md, run as written, YAML and TOML.

The two examples are taken from the document itself; only the database URLs and the password
file are pointed at real stores (PostgreSQL in schema `scheduler`, MariaDB, SQLite), each written
by a real APScheduler. Both files must resolve to the same stores, and `check` and `serve` must
read all three.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from stores import write_jobs
from support import Database, free_port, stop, wait_for

from exporter.sidecar.config import load_config

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
DOC_URLS = {
    "postgresql": "postgresql://monitor@db/app",
    "mariadb": "mysql://monitor@mariadb/reports",
    "sqlite": "sqlite:////data/billing.sqlite",
}
DOC_PASSWORD_FILE = "/run/secrets/db-password"


def doc_example(language: str) -> str:
    """The ``language`` code block of the "Several job stores" section, as written."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Several job stores", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(rf"```{language}\n(.*?)```", section, re.S)
    return block


@pytest.fixture
def stores(pg_db: Database, mariadb_db: Database, sqlite_db: Database) -> dict[str, str]:
    engine = pg_db.engine()
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA scheduler"))
    engine.dispose()
    write_jobs(pg_db.url, schema="scheduler")
    write_jobs(mariadb_db.url)
    write_jobs(sqlite_db.url)
    return {"postgresql": pg_db.url, "mariadb": mariadb_db.url, "sqlite": sqlite_db.url}


def config_file(language: str, urls: dict[str, str], tmp_path: Path) -> Path:
    text = doc_example(language)
    for kind, url in urls.items():
        assert DOC_URLS[kind] in text, f"the {language} example no longer names {DOC_URLS[kind]}"
        text = text.replace(DOC_URLS[kind], url)
    password = tmp_path / "db-password"
    password.write_text("not-checked-by-the-trusting-test-server\n")
    assert DOC_PASSWORD_FILE in text
    path = tmp_path / f"exporter.{language}"
    path.write_text(text.replace(DOC_PASSWORD_FILE, str(password)))
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSTORE_EXPORTER_")}
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "COLUMNS": "200"},
    )


def test_the_yaml_and_toml_examples_are_the_same_configuration(tmp_path: Path) -> None:
    urls = {kind: url for kind, url in DOC_URLS.items()}  # parsing needs no server
    resolved = []
    for language in ("yaml", "toml"):
        config = load_config(config_file(language, urls, tmp_path))
        resolved.append([(s.name, s.display_url, s.schema, s.jobs_table) for s in config.stores])
    assert resolved[0] == resolved[1]
    assert [(name, schema) for name, _, schema, _ in resolved[0]] == [
        ("app", "scheduler"),
        ("reports", None),
        ("billing", None),
    ]


@pytest.mark.parametrize("language", ["yaml", "toml"])
def test_the_quick_start_checks_all_three_stores(
    language: str, stores: dict[str, str], tmp_path: Path
) -> None:
    config = config_file(language, stores, tmp_path)
    proc = run("check", "--json", "--config", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert [(s["jobstore"], s["tasks"]["total"]) for s in report["jobstores"]] == [
        ("app", 3),
        ("reports", 3),
        ("billing", 3),
    ]
    proc = run("check", "--config", str(config), "--jobstore", "billing")
    assert proc.returncode == 0 and "Scheduler running with 3 tasks" in proc.stdout

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSTORE_EXPORTER_")}
    serve = subprocess.Popen(
        [sys.executable, "-m", "exporter", "serve", "--config", str(config),
         "--listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip

    def up() -> set[str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return set()
        return set(re.findall(r'apscheduler_up\{jobstore="([^"]+)"\} 1\.0', text))

    try:
        assert wait_for(lambda: up() == {"app", "reports", "billing"}, what="three stores up")
    finally:
        stop(serve)
        serve.communicate()
