#!/usr/bin/env bash
# Set up ./.venv with the test extra and run the test suite (offline by construction).
# Real-data tests read ../shared/data (or $MTPT_SHARED_DATA) and are skipped where it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
