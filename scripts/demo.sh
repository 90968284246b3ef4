#!/usr/bin/env bash
# Set up ./.venv and run the demo: prompt tuning of SmolLM2-135M on 256 bundled SST-2 sentences (about 7 minutes on 2 CPU cores, 4 with native bf16).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/mtpt demo "$@"
