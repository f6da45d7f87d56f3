#!/usr/bin/env bash
# Sets up Threadline and runs the hub on the embedded default: one process, SQLite and Mem0 in
# ./.threadline, a local embedding model, no accounts, no network. Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/threadline serve "$@"
