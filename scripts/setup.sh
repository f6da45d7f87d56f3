#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs Threadline with its test tools. Safe to run again.
#
#   scripts/setup.sh         Threadline and its test tools (scripts/test.sh, scripts/bench.sh)
#   scripts/setup.sh --hub   only what the hub needs to run (scripts/run.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

target=".[test]"
case "${1:-}" in
  --hub) target="." ;;
  "") ;;
  *) echo "setup: unknown argument $1 (--hub installs only what the hub needs)" >&2; exit 2 ;;
esac

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      PYTHON="$candidate"; break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  echo "setup: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PYTHON" >&2
  "$PYTHON" -m venv .venv
fi
# uv installs in seconds where pip takes minutes; both read the same pyproject.toml
.venv/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.4"
# uv shows its own progress (resolving, downloading, installing); compiled bytecode makes the first start
# as quick as the next ones
echo "setup: installing Threadline ($target) into .venv; the first time takes a minute or two" >&2
.venv/bin/uv pip install --python .venv/bin/python --compile-bytecode -e "$target"
