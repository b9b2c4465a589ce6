#!/usr/bin/env bash
# GPU checks, for a lent CUDA machine: it has PyTorch and transformers, no internet, and receives the working
# tree plus at most 64 MiB in all. Prepare here, run there, bring back bench/results/gpu.txt:
#
#   python bench/gpu_payload.py pack      # here: gpu_payload/ = the default model in fp16 + a synthetic corpus
#   bash bench/gpu_check.sh               # there (device tool: carry ["gpu_payload"]), about 10 minutes at most
#
# Steps, each under its own time limit, each logged whether it passes or not (one failing step does not stop
# the rest): the machine; the GPU tests (tests/test_gpu.py: bf16/fp16/fp32 training on CUDA, a CUDA predictor
# that tags as the CPU one); bench/train_speed.py in fp32 and bf16 (the run_ner recipe against nerkit's trainer,
# one epoch each); bench/speed_accuracy.py on CUDA with the torch rows in fp32 and in bf16. The corpus is
# synthetic (no licensed data travels), so its F1 figures are a sanity check, not CoNLL scores; the speeds are
# the GPU's. Output: bench/results/gpu.txt (and $OUT/gpu.txt when the device tool's $OUT is set).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}        # DEVICE=cpu SENTENCES=200 LIMIT=100: a smoke run of the plumbing on a CPU machine
SENTENCES=${SENTENCES:-3000}
LIMIT=${LIMIT:-0}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
RESULT=bench/results/gpu.txt
mkdir -p bench/results
: > "$RESULT"

log() { echo "$*" | tee -a "$RESULT"; }
step() {  # step NAME SECONDS COMMAND...: run, keep the tail of its output, note the exit status
    local name=$1 limit=$2; shift 2
    log ""
    log "## $name  (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@" > "/tmp/gpu_step.log" 2>&1
    local rc=$?
    tail -n 40 /tmp/gpu_step.log | tee -a "$RESULT"
    log "-> exit $rc in $((SECONDS - t0)) s"
}

log "# nerkit GPU check, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
step machine 60 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; $PY -c \
'import torch, transformers; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"available\", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else \"\"); print(\"transformers\", transformers.__version__)'"

if [ ! -d gpu_payload ]; then
    log "no gpu_payload/: run 'python bench/gpu_payload.py pack' on the CPU machine and carry it"
    exit 1
fi
step unpack 120 "$PY" bench/gpu_payload.py unpack --payload gpu_payload --out gpu_work

if "$PY" -c "import pytest" 2>/dev/null; then
    step "GPU tests" 180 "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py
else
    log "pytest is not installed here: GPU tests skipped"
fi

for precision in no bf16; do
    step "train_speed --precision $precision" 150 "$PY" bench/train_speed.py --device "$DEVICE" --precision "$precision" \
        --data gpu_work/data --model gpu_work/model --sentences "$SENTENCES"
done

for dtype in fp32 bf16; do
    step "speed_accuracy --dtype $dtype" 120 "$PY" bench/speed_accuracy.py --runs gpu_work/model --data \
        gpu_work/data/test.txt --device "$DEVICE" --dtype "$dtype" --backends torch --spacy none --rounds 1 --limit "$LIMIT" \
        --png "bench/results/gpu_speed_accuracy_$dtype.png"
done

if [ -n "${OUT:-}" ]; then
    cp "$RESULT" bench/results/gpu_speed_accuracy_*.png "$OUT"/ 2>/dev/null
fi
log ""
log "done in $SECONDS s"
