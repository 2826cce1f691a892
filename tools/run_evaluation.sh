#!/usr/bin/env bash
# Every table of docs/results.md (evaluation v3) for both datasets, in one command:
#
#   tools/run_evaluation.sh                                   # embedded esc50-eval model, standard baselines
#   tools/run_evaluation.sh --mel-decoder runs/esc50-eval-mel # + the mel-domain decoder beside the STFT one
#   tools/run_evaluation.sh --max-clips 100                   # a fixed seeded subset of each held-out set
#   OUT=eval-v3 THREADS=2 tools/run_evaluation.sh --ablation-decoder runs/esc50-eval-paper-lzs
#
# Any further argument goes to both `lmac-zs evaluate` runs (e.g. --clap/--decoder, --baseline-settings reduced,
# --max-clips N, --seed S). Each run is resumable: after an interruption, rerun the same command.
#
# Writes $OUT/esc50/ and $OUT/urbansound8k/ (logs, tables.{md,csv,json}, report.md, sanity figures) and
# $OUT/report.md, one page over both. Environment: DATA (default ../shared/data, the folder holding esc50/,
# urbansound8k/ and ljspeech/), OUT (default eval), THREADS (default 2), PYTHON (default: the checkout's .venv
# python if there is one, else python3).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${DATA:-../shared/data}"
OUT="${OUT:-eval}"
THREADS="${THREADS:-2}"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$HERE/.venv/bin/python" ]]; then PYTHON="$HERE/.venv/bin/python"; else PYTHON=python3; fi
fi

for dataset in esc50 urbansound8k; do
    if [[ ! -d "$DATA/$dataset" ]]; then
        echo "error: $DATA/$dataset not found (set DATA to the folder holding esc50/, urbansound8k/, ljspeech/)" >&2
        exit 2
    fi
done

for dataset in esc50 urbansound8k; do
    echo "== $dataset → $OUT/$dataset" >&2
    "$PYTHON" -m lmaczs.cli evaluate --data "$DATA/$dataset" --out "$OUT/$dataset" --threads "$THREADS" \
        --baseline-settings standard --sanity --localization --separation "$@"
done
"$PYTHON" -m lmaczs.evaluation.report "$OUT/esc50" "$OUT/urbansound8k" --out "$OUT/report.md"
echo "report → $OUT/report.md" >&2
