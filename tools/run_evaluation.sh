#!/usr/bin/env bash
# Every table of docs/results.md (evaluation v3) for both datasets, in one command:
#
#   tools/run_evaluation.sh                                   # embedded esc50-eval model, standard baselines
#   tools/run_evaluation.sh --mel-decoder runs/esc50-eval-mel # + the mel-domain decoder beside the STFT one
#   tools/run_evaluation.sh --max-clips 100                   # a fixed seeded subset of each held-out set
#   OUT=eval-v3 THREADS=2 tools/run_evaluation.sh --ablation-decoder runs/esc50-eval-paper-lzs
#   PLAN=budget tools/run_evaluation.sh --mel-decoder runs/esc50-eval-mel   # what docs/results.md shows
#
# PLAN=full (default): every part at standard baseline settings, in $OUT/<dataset>/.
# PLAN=budget (what fits a few hours on 2 cores): the clean condition at standard settings on a seeded subset of
# STANDARD_CLIPS clips (default 100) in $OUT/<dataset>-standard/; every condition, localisation, separation and
# the sanity checks at reduced settings on the first REDUCED_CLIPS (default 40) of the same nested subset in
# $OUT/<dataset>/; and $OUT/<dataset>-settings.md, how much the reduction changes each clean metric
# (python -m lmaczs.evaluation.settings_effect).
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

PLAN="${PLAN:-full}"
STANDARD_CLIPS="${STANDARD_CLIPS:-100}"
REDUCED_CLIPS="${REDUCED_CLIPS:-40}"
evaluate() { "$PYTHON" -m lmaczs.cli evaluate --threads "$THREADS" "$@"; }

runs=()
case "$PLAN" in
    full)
        for dataset in esc50 urbansound8k; do
            echo "== $dataset → $OUT/$dataset" >&2
            evaluate --data "$DATA/$dataset" --out "$OUT/$dataset" --baseline-settings standard --sanity \
                --localization --separation "$@"
            runs+=("$OUT/$dataset")
        done ;;
    budget)
        for dataset in esc50 urbansound8k; do
            echo "== $dataset, clean at standard settings ($STANDARD_CLIPS clips) → $OUT/$dataset-standard" >&2
            evaluate --data "$DATA/$dataset" "$@" --out "$OUT/$dataset-standard" --baseline-settings standard \
                --conditions clean --max-clips "$STANDARD_CLIPS"
            echo "== $dataset, everything at reduced settings ($REDUCED_CLIPS clips) → $OUT/$dataset" >&2
            evaluate --data "$DATA/$dataset" "$@" --out "$OUT/$dataset" --baseline-settings reduced \
                --max-clips "$REDUCED_CLIPS" --sanity --localization --separation
            "$PYTHON" -m lmaczs.evaluation.settings_effect "$OUT/$dataset-standard" "$OUT/$dataset" \
                --out "$OUT/$dataset-settings.md"
            runs+=("$OUT/$dataset-standard" "$OUT/$dataset")
        done ;;
    *)
        echo "error: PLAN must be full or budget, got '$PLAN'" >&2
        exit 2 ;;
esac
"$PYTHON" -m lmaczs.evaluation.report "${runs[@]}" --out "$OUT/report.md"
echo "report → $OUT/report.md" >&2
