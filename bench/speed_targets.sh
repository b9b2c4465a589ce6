#!/usr/bin/env bash
# Every point of the speed/accuracy curve from nothing, on whatever CPU this is (the speed issue's targets
# hold per machine: an AVX2-only CPU needs its own run). Each step is skipped when its result exists, so
# the chain can be stopped and started again across sessions; each training logs to runs/NAME.log.
#
#   bash bench/speed_targets.sh            # all of it: about 3.5 hours of two busy cores
#   bash bench/speed_targets.sh --dry-run  # the commands it would run now, and the steps already done
#   STEPS="teacher student-3l student-conv spacy bench" bash bench/speed_targets.sh   # a shorter chain
#
# Steps, in order (the times are this project's 2-core machines; bench/results/distill.txt has them):
#   teacher       the default model               nerkit train (25-30 min)
#   teacher-s7    a second seed                   nerkit train --train.seed 7 (25-30 min)
#   student-4l    4 layers, both teachers         nerkit distill (about 23 min)
#   student-3l    3 layers, both teachers         nerkit distill (about 16 min)
#   student-2l    2 layers, the default teacher   nerkit distill, alpha 0.8, lr 3e-4, two copies with
#                                                 names swapped, 3 epochs (about 23 min)
#   student-conv  conv 4x256, kernel 3            nerkit distill, two copies with names swapped (about 19 min)
#   student-lstm  BiLSTM 2x256                    nerkit distill, two copies with names swapped (about 26 min
#                                                 on an AVX2-only EPYC, labelling included)
#   spacy         spaCy's efficiency pipeline     python bench/spacy_ner.py train
#   bench         bench/speed_accuracy.py over all of the above, 3 rounds (about 20 min, exports included)
# A student whose second teacher is missing from STEPS learns from the first one alone.
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
STEPS=${STEPS:-"teacher teacher-s7 student-4l student-3l student-2l student-conv student-lstm spacy bench"}
NERKIT=${NERKIT:-nerkit}
PY=${PYTHON:-python}
T1=runs/conll03-minilm
T2=runs/conll03-minilm-s2

wanted() { [[ " $STEPS " == *" $1 "* ]]; }
teachers() { echo "--teacher $T1$(wanted teacher-s7 && echo " --teacher $T2")"; }

run() {  # run NAME DONE_FILE COMMAND...: skipped when DONE_FILE exists
    local name=$1 done_file=$2; shift 2
    if ! wanted "$name"; then return 0; fi
    if [ -e "$done_file" ]; then echo "done already: $name ($done_file)"; return 0; fi
    echo "$(date +%H:%M:%S) $name: $*"
    [ "$DRY" = 1 ] && return 0
    # A run folder left by a stopped training resumes from its last checkpoint instead of starting over.
    local extra=()
    [[ "$1" == "$NERKIT" && -d "${done_file%/metrics.json}/checkpoint" ]] && extra=(--resume)
    "$@" "${extra[@]}" >> "runs/$name.log" 2>&1 || { echo "$name failed: see runs/$name.log" >&2; exit 1; }
}

mkdir -p runs
run teacher "$T1/metrics.json" $NERKIT train --config configs/conll03-minilm.toml --output "$T1"
run teacher-s7 "$T2/metrics.json" $NERKIT train --config configs/conll03-minilm.toml --output "$T2" --train.seed 7
D="$NERKIT distill --config configs/conll03-distill.toml"
run student-4l runs/student-4l-ens/metrics.json $D $(teachers) --layers 4 --output runs/student-4l-ens
run student-3l runs/student-3l-ens/metrics.json $D $(teachers) --layers 3 --output runs/student-3l-ens
run student-2l runs/student-2l-aug2/metrics.json $D --teacher "$T1" --layers 2 --distill.alpha 0.8 \
    --train.lr 3e-4 --data.augment 2 --train.epochs 3 --output runs/student-2l-aug2
run student-conv runs/student-conv-aug2/metrics.json $D --teacher "$T1" --student conv --layers 4 --width 256 \
    --kernel 3 --train.lr 1e-3 --data.augment 2 --output runs/student-conv-aug2
run student-lstm runs/student-lstm2-aug2/metrics.json $D --teacher "$T1" --student lstm --layers 2 --width 256 \
    --train.lr 1e-3 --data.augment 2 --output runs/student-lstm2-aug2
if wanted spacy && [ "$DRY" = 0 ] && ! $PY -c "import spacy" 2>/dev/null; then
    echo "spaCy is not installed (the bench's peer, not a nerkit dependency): pip install spacy" >&2; exit 1
fi
run spacy runs/spacy-efficiency/model-best $PY bench/spacy_ner.py train

if wanted bench; then
    RUNS=()
    for r in "$T1" runs/student-4l-ens runs/student-3l-ens runs/student-2l-aug2 runs/student-conv-aug2 runs/student-lstm2-aug2; do
        [ -e "$r/metrics.json" ] && RUNS+=("$r")
    done
    echo "$(date +%H:%M:%S) bench: $PY bench/speed_accuracy.py --runs ${RUNS[*]} --spacy-processes 1 2"
    [ "$DRY" = 1 ] && exit 0
    OUT_FILE=bench/results/speed_accuracy.txt
    { echo "\$ python bench/speed_accuracy.py --runs ${RUNS[*]} --spacy-processes 1 2"
      $PY bench/speed_accuracy.py --runs "${RUNS[@]}" --spacy-processes 1 2 2>&1 | grep -v '^Loading weights'; } > "$OUT_FILE.part"
    mv "$OUT_FILE.part" "$OUT_FILE"  # a stopped bench leaves the previous results whole
    tail -n 20 bench/results/speed_accuracy.txt
fi
