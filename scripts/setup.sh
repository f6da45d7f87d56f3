#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs Threadline with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

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
  "$PYTHON" -m venv .venv
fi
# uv installs in seconds where pip takes minutes; both read the same pyproject.toml
.venv/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.4"
.venv/bin/uv pip install --quiet --python .venv/bin/python -e ".[test]"
