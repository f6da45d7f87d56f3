#!/usr/bin/env bash
# Sets up Threadline and runs the whole test suite: lint, types, architecture, then pytest.
# PostgreSQL tests use 127.0.0.1:5432 (database `test`); it is started here when installed but stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# The console's browser tests (tests/browser) drive Debian's chromium through Playwright; Playwright never
# downloads a browser here. THREADLINE_CHROMIUM names another chromium. Without one they skip (fail under
# CI=true), so an install that does not work is reported and the suite goes on.
if [ -z "${THREADLINE_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  as_root=""
  if [ "$(id -u)" -ne 0 ]; then as_root="sudo"; fi
  if [ -n "$as_root" ] && ! command -v sudo >/dev/null 2>&1; then
    echo "test: chromium is missing and installing it needs root (no sudo): the browser tests will skip (fail under CI=true)" >&2
  else
    echo "test: installing chromium from Debian's packages for the browser tests" >&2
    apt_install() {
      $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
    }
    if ! apt_install >/dev/null; then
      $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && apt_install >/dev/null ||
        echo "test: could not install chromium (apt-get failed): the browser tests will skip (fail under CI=true)" >&2
    fi
  fi
fi

if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
  done
fi

echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy (strict)"; .venv/bin/mypy
echo "== import-linter"; .venv/bin/lint-imports
echo "== pytest"
if [ "$#" -gt 0 ]; then
  exec .venv/bin/pytest "$@"  # a selection of your own: one process, as given
fi
# Two rounds. First every test but the `serial` ones, whole files spread over the cores (pytest-xdist; at
# most 4 workers: each test may hold a few PostgreSQL connections). Then the `serial` ones alone: the kill -9
# crash proofs make their own load (three hub processes, a burst) and must not share the cores, and they and
# the fuzz targets print their figures, which only a single process shows. A failure in the first round
# still runs the second; the exit status is the first failure's.
workers=$(nproc 2>/dev/null || echo 2)
if [ "$workers" -gt 4 ]; then workers=4; fi
status=0
.venv/bin/pytest -n "$workers" --dist loadfile -m "not serial" || status=$?
.venv/bin/pytest -m serial || { rc=$?; [ "$status" -ne 0 ] || status=$rc; }
exit "$status"
