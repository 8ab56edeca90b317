#!/usr/bin/env bash
# One call on a CUDA machine: the environment, the test suite with the CUDA tests, the offline
# reproduction on CUDA and the benchmarks in float32 and bfloat16, in about 8 minutes on an H100.
# Records go to benchmarks/results/ with the GPU's name in each file name.
#
#   benchmarks/gpu_check.sh              # run it
#   benchmarks/gpu_check.sh --dry-run    # say what would run (and what is missing), run nothing
#   benchmarks/gpu_check.sh --out DIR    # also copy the records to DIR (e.g. a lent machine's $OUT)
#
# Which Python: $PYTHON if set, else .venv/bin/python if its torch sees CUDA, else python3 (the
# image of a lent GPU machine, whose torch has CUDA but which has no network): then a venv
# .venv-gpu is made on top of it (--system-site-packages) with this package installed without
# dependencies, plus the wheels in $WHEELS if set (see the README's GPU section).
#
# Each step has a time budget (seconds, below); a step that does not fit the time left is
# skipped and the record says so. TOTAL_S bounds the whole check.
set -u -o pipefail

TOTAL_S=${TOTAL_S:-480}
BUDGET_SETUP=60
BUDGET_TEST_CUDA=60
BUDGET_TEST=150
BUDGET_REPRODUCE=120
BUDGET_BENCH=60        # per dtype
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1

DRY_RUN=0
COPY_TO=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --out) COPY_TO=$2; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

START=$(date +%s)
STAMP=$(date +%Y-%m-%d-%H%M)
if [ -z "${MEMRECALL_DATA_DIR:-}" ] && [ -f "$ROOT/../shared/data/README.md" ]; then
    export MEMRECALL_DATA_DIR="$ROOT/../shared/data"
fi
export PYTHONUNBUFFERED=1 MEMRECALL_PLAIN_PROGRESS=1

say() { echo "[gpu_check $(( $(date +%s) - START ))s] $*"; }
has_cuda() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' \
    >/dev/null 2>&1; }

# --- 1. the environment -----------------------------------------------------------------------
PY=""
for candidate in ${PYTHON:-} "$ROOT/.venv/bin/python" python3; do
    if command -v "$candidate" >/dev/null 2>&1 && has_cuda "$candidate"; then
        PY=$candidate; break
    fi
done
if [ -z "$PY" ]; then
    found=$("${PYTHON:-$ROOT/.venv/bin/python}" -c 'import torch; print(torch.__version__)' \
        2>/dev/null || echo "no torch")
    cat >&2 <<EOF
gpu_check: no Python here has a torch that sees a CUDA device (found: $found).
On a CUDA machine with a network, install the CUDA build of the pinned torch first, then the rest:
    python -m venv .venv
    .venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126
    make env
and run this script again (or set PYTHON to an interpreter whose torch has CUDA).
EOF
    [ $DRY_RUN -eq 1 ] && echo "dry run: the steps below would need that environment" >&2
    [ $DRY_RUN -eq 1 ] || exit 3
    PY=${PYTHON:-$ROOT/.venv/bin/python}
fi

if ! "$PY" -c 'import memrecall' >/dev/null 2>&1; then
    say "$PY has CUDA but not memrecall: a venv .venv-gpu on top of it"
    if [ $DRY_RUN -eq 0 ]; then
        timeout $BUDGET_SETUP bash -c "
            '$PY' -m venv --system-site-packages '$ROOT/.venv-gpu' &&
            '$ROOT/.venv-gpu/bin/python' -m pip install -q --no-deps --no-build-isolation -e '$ROOT' &&
            if [ -n '${WHEELS:-}' ]; then
                '$ROOT/.venv-gpu/bin/python' -m pip install -q --no-index --no-deps '${WHEELS:-}'/*.whl
            fi" || { echo "gpu_check: could not build .venv-gpu" >&2; exit 4; }
        if [ -n "${GPT2_BPE:-}" ]; then
            mkdir -p "$ROOT/.venv-gpu/share" && cp -r "$GPT2_BPE" "$ROOT/.venv-gpu/share/gpt2-bpe"
        fi
        PY="$ROOT/.venv-gpu/bin/python"
    fi
fi

eval "$(PYTHONPATH="$ROOT/lib" "$PY" "$ROOT/benchmarks/gpu_preflight.py" 2>/dev/null)" || true
: "${CUDA:=0}" "${DEVICE_NAME:=unknown}" "${OFFLINE_MODELS:=0}" "${DATA:=0}" "${GPT2_BPE:=0}"
: "${NOTEBOOK_DEPS:=0}" "${PIN_MISMATCHES:=}" "${TORCH:=missing}"
SLUG=$(echo "$DEVICE_NAME" | tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9]+/-/g; s/^-|-$//g')
RESULTS="$ROOT/benchmarks/results"
LOG="$RESULTS/$STAMP-gpu-check-$SLUG.log"
RECORD="$RESULTS/$STAMP-gpu-check-$SLUG.json"
mkdir -p "$RESULTS"
say "python $PY, torch $TORCH, device $DEVICE_NAME (CUDA $CUDA)"
say "offline models $OFFLINE_MODELS, data $DATA, GPT-2 BPE $GPT2_BPE, notebook deps $NOTEBOOK_DEPS"
[ -n "$PIN_MISMATCHES" ] && say "not the pinned versions: $PIN_MISMATCHES"

# --- 2. the steps -----------------------------------------------------------------------------
STEPS=()   # "name|status|seconds|note" lines for the record

step() {  # step NAME BUDGET REQUIREMENT_OK NOTE COMMAND...
    local name=$1 budget=$2 ok=$3 note=$4; shift 4
    local left=$(( TOTAL_S - ($(date +%s) - START) ))
    if [ "$ok" != 1 ]; then
        say "skip $name: $note"; STEPS+=("$name|skipped|0|$note"); return
    fi
    if [ "$budget" -gt "$left" ]; then
        say "skip $name: needs ${budget}s, ${left}s left"
        STEPS+=("$name|skipped|0|does not fit: needs ${budget}s, ${left}s left"); return
    fi
    say "$name (budget ${budget}s): $*"
    if [ $DRY_RUN -eq 1 ]; then STEPS+=("$name|planned|0|$*"); return; fi
    local began=$(date +%s) status
    timeout --kill-after=10 "$budget" "$@" >>"$LOG" 2>&1
    status=$?
    local took=$(( $(date +%s) - began ))
    case $status in
        0) STEPS+=("$name|ok|$took|") ;;
        124|137) STEPS+=("$name|timed out|$took|over its ${budget}s budget") ;;
        *) STEPS+=("$name|failed ($status)|$took|see $(basename "$LOG")") ;;
    esac
    say "$name: ${STEPS[-1]#*|}"
}

export PYTHONPATH="$ROOT/lib${PYTHONPATH:+:$PYTHONPATH}"
REPRO_PROFILE=offline
REPRO_NOTE=""
if [ "$OFFLINE_MODELS" != 1 ]; then
    REPRO_PROFILE=smoke
    REPRO_NOTE="the packaged offline models are not on this machine: the smoke profile instead"
    say "$REPRO_NOTE"
fi
BENCH_CASES=""
[ "$GPT2_BPE" = 1 ] && BENCH_CASES="gpt2-medium-shape"
[ "$OFFLINE_MODELS" = 1 ] && BENCH_CASES="${BENCH_CASES:+$BENCH_CASES,}gemma-3-270m,knockout"
BENCH_OK=$([ -n "$BENCH_CASES" ] && [ "$DATA" = 1 ] && echo 1 || echo 0)

step tests-cuda $BUDGET_TEST_CUDA "$DATA" "IdioMem not found (set MEMRECALL_DATA_DIR)" \
    "$PY" -m pytest -q -p no:cacheprovider -m cuda
step tests $BUDGET_TEST "$NOTEBOOK_DEPS" "papermill/nbformat/ipykernel missing (WHEELS)" \
    "$PY" -m pytest -q -p no:cacheprovider -m "not cuda" -n 8
step reproduce $BUDGET_REPRODUCE "$([ "$DATA$NOTEBOOK_DEPS" = 11 ] && echo 1 || echo 0)" \
    "needs the data and the notebook packages" \
    "$PY" -m memrecall.reproduce --profile $REPRO_PROFILE --device cuda \
    --name "$REPRO_PROFILE-$SLUG"
for dtype in float32 bfloat16; do
    step "bench-$dtype" $BUDGET_BENCH "$BENCH_OK" "no benchmark case can run here" \
        "$PY" benchmarks/run.py --device cuda --dtype $dtype --cases "${BENCH_CASES:-none}" \
        --reps 3 --wiki 1000
done

# --- 3. the record ----------------------------------------------------------------------------
TOTAL=$(( $(date +%s) - START ))
if [ $DRY_RUN -eq 1 ]; then
    say "dry run: nothing ran; the check would take at most ${TOTAL_S}s"
    exit 0
fi
printf '%s\n' "${STEPS[@]}" | "$PY" -c '
import json, sys
steps = [dict(zip(("step", "status", "seconds", "note"), line.rstrip("\n").split("|", 3)))
         for line in sys.stdin if line.strip()]
for s in steps:
    s["seconds"] = int(s["seconds"])
record = dict(zip(sys.argv[1::2], sys.argv[2::2])) | {"steps": steps}
json.dump(record, open(record["record"], "w"), indent=1)
' record "$RECORD" device_name "$DEVICE_NAME" torch "$TORCH" python "$PY" \
    total_seconds "$TOTAL" budget_seconds "$TOTAL_S" pin_mismatches "$PIN_MISMATCHES" \
    reproduce_profile "$REPRO_PROFILE" reproduce_note "$REPRO_NOTE"
if [ -f "$ROOT/results/$REPRO_PROFILE-$SLUG/summary.csv" ]; then
    cp "$ROOT/results/$REPRO_PROFILE-$SLUG/summary.csv" \
        "$RESULTS/$STAMP-gpu-check-$SLUG-$REPRO_PROFILE-summary.csv"
fi
say "record $RECORD (log $(basename "$LOG"))"
if [ -n "$COPY_TO" ]; then
    mkdir -p "$COPY_TO"
    cp "$RESULTS"/"$STAMP"-* "$COPY_TO"/ 2>/dev/null
    cp "$RESULTS"/*-"$SLUG"*.json "$COPY_TO"/ 2>/dev/null
fi
failed=$(printf '%s\n' "${STEPS[@]}" | grep -c -v -E '\|(ok|skipped)\|')
exit $(( failed > 0 ))
