#!/usr/bin/env bash
# The GPU reading of mtpt (issue 33): the device tests, then `mtpt bench speed` on a randomly initialised
# SmolLM2-135M-shaped model in bf16 against the bare backbone and both PEFT arms, with peak GPU memory per arm.
#
#   scripts/gpu-check.sh [--dry] [OUT]      (OUT: the output folder; default $OUT, else ./gpu-check-out)
#
# Made for a machine with one NVIDIA GPU, its own Python 3.12 with torch and transformers installed, no network,
# and at most 64 MiB carried: the source tree runs as it is (PYTHONPATH=src) on the machine's torch, and the few
# packages mtpt needs that such a machine may lack are unpacked from the wheels in .whl/ (gitignored; carry it
# along). No weights travel: the model is built from a config (backbone random-smollm2-135m). It finishes in a
# few minutes (each step is bounded by `timeout`; 10 minutes at most in all).
#
# Filling .whl/ (on a machine with PyPI; pure-Python wheels except psutil's, which is abi3 and manylinux; 3.2 MB):
#   pip download --dest .whl --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_12_x86_64 \
#       accelerate==1.15.0 peft==0.21.2 jsonargparse==4.53.0 docstring-parser==0.18.0 psutil==7.2.2 \
#       pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 pygments==2.19.2
# (transformers already brings numpy, PyYAML, safetensors, tokenizers, tqdm, huggingface_hub and packaging; if one
# is missing there, download its wheel too: the script names what it lacks. scipy, scikit-learn, datasets, gguf
# and matplotlib are not needed: mtpt imports them only where a metric, a dataset or a plot needs them.)
#
# --dry runs the same steps on the CPU with tiny settings (tiny-llama, fp32, one repeat): the test suite runs it.
# Environment: PYTHON (default python3), WHEELS (default .whl), GPU_CHECK_EXTRA ("module:wheel-prefix ..." added
# to the packages checked; the tests use it), REPEATS (default 15).
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
DEST=""
for arg in "$@"; do
    case "$arg" in
        --dry) DRY=1 ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) DEST="$arg" ;;
    esac
done
DEST="${DEST:-${OUT:-gpu-check-out}}"
mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
PY="${PYTHON:-python3}"
WHEELS="${WHEELS:-.whl}"
SITE="$(mktemp -d "${TMPDIR:-/tmp}/mtpt-gpu-site.XXXXXX")"
trap 'rm -rf "$SITE"' EXIT
export PYTHONPATH="$PWD/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false JSONARGPARSE_DEPRECATION_WARNINGS=off
export MTPT_CACHE_DIR="$SITE/cache"
FAILED=()
log() { echo "[gpu-check] $*" | tee -a "$DEST/summary.md"; }

: > "$DEST/summary.md"
log "started $(date -u +%FT%TZ), dry=$DRY, output $DEST"

# 1. The packages mtpt needs: those the machine lacks are unpacked from .whl/ (a wheel is a zip archive).
NEEDED="accelerate:accelerate peft:peft jsonargparse:jsonargparse docstring_parser:docstring_parser psutil:psutil
yaml:pyyaml safetensors:safetensors tokenizers:tokenizers tqdm:tqdm numpy:numpy packaging:packaging
huggingface_hub:huggingface_hub pytest:pytest pluggy:pluggy iniconfig:iniconfig pygments:pygments ${GPU_CHECK_EXTRA:-}"
for pair in $NEEDED; do
    module="${pair%%:*}"; prefix="${pair#*:}"
    if "$PY" -c "import $module" 2>/dev/null; then
        continue
    fi
    wheel="$(ls "$WHEELS" 2>/dev/null | grep -i "^${prefix//-/_}-[0-9]" | head -n 1)"
    if [ -z "$wheel" ]; then
        log "MISSING: the machine's Python lacks '$module' and $WHEELS holds no ${prefix}-*.whl (see this script's header)"
        FAILED+=("wheel:$module")
        continue
    fi
    "$PY" -m zipfile -e "$WHEELS/$wheel" "$SITE" && log "unpacked $wheel (for '$module')"
done

# 2. The machine.
"$PY" - > "$DEST/environment.json" <<'EOF'
import json, platform, sys
import torch, transformers
info = {"python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
        "transformers": transformers.__version__, "cuda_available": torch.cuda.is_available()}
if torch.cuda.is_available():
    info |= {"gpu": torch.cuda.get_device_name(), "cuda": torch.version.cuda, "bf16": torch.cuda.is_bf16_supported()}
for name in ("peft", "accelerate"):
    try:
        info[name] = __import__(name).__version__
    except Exception as err:
        info[name] = f"not importable: {err}"
print(json.dumps(info, indent=1))
EOF
cat "$DEST/environment.json" >> "$DEST/summary.md"
command -v nvidia-smi >/dev/null && nvidia-smi > "$DEST/nvidia-smi.txt" 2>&1
if ! "$PY" -c "import mtpt.cli, mtpt.bench.speed" > "$DEST/import.txt" 2>&1; then
    log "FAILED: import mtpt (see import.txt)"; FAILED+=("import")
fi

if [ "$DRY" = 1 ]; then
    DEVICE=cpu
    BACKBONE=tiny-llama; PRECISION=no; REPEATS="${REPEATS:-1}"
    SIZES="--batch 2 --prompt-length 4"; TOKENS="8 16"; METHODS_ALL="pt mpt"; METHODS_LONG="pt"
else
    DEVICE=cuda
    BACKBONE=random-smollm2-135m; PRECISION=bf16; REPEATS="${REPEATS:-15}"
    SIZES="--batch 8 --prompt-length 20"; TOKENS="64 256"; METHODS_ALL=""; METHODS_LONG="pt mpt"
fi

# 3. The tests that run on a device.
log "device tests on $DEVICE"
MTPT_TEST_DEVICE="$DEVICE" timeout 150 "$PY" -m pytest -q -p no:cacheprovider -m device tests/test_device.py \
    --junitxml "$DEST/device-tests.xml" > "$DEST/device-tests.txt" 2>&1
rc=$?
log "device tests: exit $rc ($(tail -n 1 "$DEST/device-tests.txt"))"
[ "$rc" = 0 ] || FAILED+=("device-tests")

# 4. The speed readings: every method at the first length, PT and MPT at the second.
for tokens in $TOKENS; do
    if [ "$tokens" = "${TOKENS%% *}" ]; then methods="$METHODS_ALL"; else methods="$METHODS_LONG"; fi
    folder="$DEST/speed-$tokens"
    log "mtpt bench speed: $BACKBONE, $tokens text tokens, precision $PRECISION, $REPEATS repeats, methods ${methods:-all}"
    timeout 220 "$PY" -m mtpt.cli bench speed --backbone "$BACKBONE" --precision "$PRECISION" --repeats "$REPEATS" \
        --text-tokens "$tokens" $SIZES ${methods:+--methods $methods} --out "$folder" > "$DEST/speed-$tokens.log" 2>&1
    rc=$?
    if [ "$rc" = 0 ] && [ -f "$folder/speed.md" ]; then
        cat "$folder/speed.md" >> "$DEST/summary.md"
    else
        log "FAILED: bench speed at $tokens tokens, exit $rc (see speed-$tokens.log)"; FAILED+=("speed-$tokens")
    fi
done

if [ "${#FAILED[@]}" -gt 0 ]; then
    log "done with failures: ${FAILED[*]}"
    exit 1
fi
log "done $(date -u +%FT%TZ): all steps passed"
