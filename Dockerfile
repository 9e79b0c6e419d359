# jobstore-exporter: the sidecar image.
#
#   docker build -t jobstore-exporter .
#   docker run --rm -p 9814:9814 -e JOBSTORE_EXPORTER_DB_URL=postgresql://monitor@db/app \
#     -e JOBSTORE_EXPORTER_DB_PASSWORD_FILE=/run/secrets/db-password jobstore-exporter
#
# Configuration comes from the environment (JOBSTORE_EXPORTER_*), flags after the image name or a
# mounted --config file; see docs/configuration.md and docs/deploy.md. Nothing secret is baked in:
# pass the password as a file (a Docker or Kubernetes secret), never as a build argument.

# ---- build: install the project and its dependencies into a virtualenv --------------------------
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
# Dependencies resolve against pyproject.toml's ranges; pin them with a constraints file if you
# need reproducible images.
RUN /opt/venv/bin/pip install --no-cache-dir .

# ---- base: the virtualenv only, as an unprivileged user -------------------------------------------
FROM python:3.11.14-slim-bookworm AS base

LABEL org.opencontainers.image.title="jobstore-exporter" \
      org.opencontainers.image.description="Prometheus exporter sidecar for APScheduler 3 database job stores" \
      org.opencontainers.image.licenses="MIT"

# A fixed uid/gid (10001) so Kubernetes' runAsUser/fsGroup and volume ownership can name it.
# /data and /backups are owned by it so that named volumes mounted there start writable (the
# compose stacks keep the demo app's SQLite file and backups there).
RUN groupadd --system --gid 10001 exporter \
    && useradd --system --uid 10001 --gid exporter --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin exporter \
    && mkdir -p /data /backups \
    && chown exporter:exporter /data /backups

COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 10001:10001
WORKDIR /tmp

# ---- demo-app: the compose stacks' app (deploy/demo_scheduler.py, mounted at /app) -------------
# Only for docker-compose*.yml (`target: demo-app`); pg_dump backs up its PostgreSQL database.
# Debian bookworm's client is PostgreSQL 15: the server must not be newer.
FROM base AS demo-app
USER 0
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*
USER 10001:10001
ENTRYPOINT ["python", "/app/demo_scheduler.py"]

# ---- exporter: the sidecar (the default target) -------------------------------------------------
FROM base AS exporter

EXPOSE 9814

# No curl in slim images: ask /healthz with Python, on the port of JOBSTORE_EXPORTER_LISTEN_ADDRESS
# (default 9814). Assumes plain HTTP on all interfaces or on loopback: with TLS in a web config
# file, override it (docs/deploy.md).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('JOBSTORE_EXPORTER_LISTEN_ADDRESS', '').rpartition(':')[2] or '9814'; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# `serve` stops cleanly on SIGINT (Ctrl-C); as PID 1 it would ignore a SIGTERM.
STOPSIGNAL SIGINT
ENTRYPOINT ["jobstore-exporter"]
CMD ["serve"]
