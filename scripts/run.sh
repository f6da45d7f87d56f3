#!/usr/bin/env bash
# Sets up Threadline (only what the hub needs, no test tools) and runs the hub on the embedded default:
# one process, SQLite and Mem0 in ./.threadline, a local embedding model, no accounts, no network.
# Extra arguments go to `threadline serve`:  scripts/run.sh --port 8080 --host 0.0.0.0
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --hub
exec .venv/bin/threadline serve "$@"
