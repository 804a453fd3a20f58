#!/usr/bin/env bash
# Make sure the PostgreSQL the integration tests use is up (127.0.0.1:5432 by default; MM_TEST_PG_URL overrides).
# Starts the local cluster when it is installed but stopped. Never fails: the tests report what is missing.
set -u
host=${PGHOST:-127.0.0.1}
port=${PGPORT:-5432}
up() { pg_isready -q -h "$host" -p "$port" 2>/dev/null || (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }
if up; then exit 0; fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "ensure-postgres: starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>&1 || true
  for _ in $(seq 1 30); do up && exit 0; sleep 1; done
fi
echo "ensure-postgres: no PostgreSQL at $host:$port; PostgreSQL tests will skip (or fail under CI=true)"
exit 0
