#!/usr/bin/env bash
# Sets up Threadline and runs the whole test suite: lint, types, architecture, then pytest.
# PostgreSQL tests use 127.0.0.1:5432 (database `test`); it is started here when installed but stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
  done
fi

echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy (strict)"; .venv/bin/mypy
echo "== import-linter"; .venv/bin/lint-imports
echo "== pytest"; .venv/bin/pytest "$@"
