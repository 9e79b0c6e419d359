#!/bin/sh
# Creates the exporter's read-only role on first start of the PostgreSQL container (the image
# runs /docker-entrypoint-initdb.d/* once, on an empty data volume). The role can SELECT the
# tables the app creates later (apscheduler_jobs, job_execution, scheduler_heartbeat) and nothing
# else; its sessions are read-only by default. docs/deploy.md explains the grants.
#
# Environment: POSTGRES_USER and POSTGRES_DB (set by the image), MONITOR_USER (default monitor)
# and MONITOR_PASSWORD_FILE (default /run/secrets/monitor-db-password).
set -eu

monitor_user="${MONITOR_USER:-monitor}"
monitor_password="$(cat "${MONITOR_PASSWORD_FILE:-/run/secrets/monitor-db-password}")"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set=db="$POSTGRES_DB" --set=owner="$POSTGRES_USER" \
  --set=monitor="$monitor_user" --set=monitor_password="$monitor_password" <<'SQL'
CREATE ROLE :"monitor" LOGIN PASSWORD :'monitor_password';
ALTER ROLE :"monitor" SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE :"db" TO :"monitor";
GRANT USAGE ON SCHEMA public TO :"monitor";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"monitor";
-- Tables the app creates from now on (the scheduler creates its tables at first start).
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO :"monitor";
SQL
