"""How much the reduced baseline settings change the metrics: two ``lmac-zs evaluate`` runs of one model on one
dataset, one at ``--baseline-settings standard`` and one at ``reduced``, compared clip by clip::

    python -m lmaczs.evaluation.settings_effect eval/esc50-standard eval/esc50 --out eval/esc50-settings.md

For every method both runs hold and every faithfulness column, over the (condition, clip) pairs both runs hold
(by default the clean condition): the mean at standard settings, the mean at reduced settings, their paired
difference (reduced − standard) with a 95 % bootstrap interval over the clips, and a paired test. Methods
whose settings are the same in both presets (LMAC-ZS, GradCAM, GradCAM++, Saliency) must come out with zero
difference: they are the check that the two runs saw the same inputs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ..checkpoint import atomic_write_text
from ..errors import LmacError
from .logs import CONFIG, RESULTS, ResultLog, read_settings, same_model
from .methods import ALL_METHODS, DECODERS
from .report import strict
from .stats import StatsConfig, mean_sem
from .tables import FAITHFULNESS, Column, baselines_text, fmt, fmt_ci, label


def _load_run(path: Path) -> tuple[dict, list[dict]]:
    cfg, log = Path(path) / CONFIG, Path(path) / RESULTS
    if not cfg.is_file() or not log.is_file():
        raise LmacError(f"{path} holds no evaluation (no {CONFIG} and {RESULTS}; run lmac-zs evaluate --out {path})")
    settings = read_settings(path)
    if not settings:
        raise LmacError(f"{cfg} records no result settings")
    return settings, ResultLog(log, ("condition", "method", "clip")).rows


def check_comparable(standard: dict, reduced: dict) -> None:
    """The two runs must differ in the baseline settings only: same model, dataset, seed and SNR."""
    if not same_model(standard.get("model", {}), reduced.get("model", {})):
        raise LmacError("the two runs evaluate different models; compare runs of one model")
    for key in ("dataset", "seed", "snr_db"):
        if standard.get(key) != reduced.get(key):
            raise LmacError(f"the two runs differ in {key} ({standard.get(key)!r} vs {reduced.get(key)!r})")
    if standard.get("baselines") == reduced.get("baselines"):
        raise LmacError("the two runs used the same baseline settings: nothing to compare")


def settings_effect(standard_rows: Sequence[dict], reduced_rows: Sequence[dict], *, condition: str = "clean",
                    columns: Sequence[Column] = FAITHFULNESS, stats: StatsConfig | None = None) -> dict:
    """Per method and column, over the clips of ``condition`` both logs hold:
    ``{"clips": n, "methods": {key: {col: {"standard", "reduced", "mean" (Δ), "lo", "hi", "p", "holds"}}}}``.

    Methods are taken in the order of :data:`ALL_METHODS` (decoders first), then any others alphabetically.
    """
    stats = stats or StatsConfig()

    def index(rows):
        return {(r["method"], r["clip"]): r for r in rows if r["condition"] == condition}

    a, b = index(standard_rows), index(reduced_rows)
    common = sorted(set(a) & set(b))
    keys = {m for m, _ in common}
    order = [m for m in dict.fromkeys((*DECODERS, *ALL_METHODS)) if m in keys]  # lmaczs is in both
    order += sorted(keys - set(order))
    out: dict = {"condition": condition, "clips": len({c for _, c in common}), "methods": {}, "stats": stats.describe()}
    for m in order:
        clips = [c for k, c in common if k == m]
        entry: dict = {"n": len(clips)}
        for col in columns:
            x = np.array([_num(a[m, c].get(col.key)) for c in clips])
            y = np.array([_num(b[m, c].get(col.key)) for c in clips])
            cell = stats.summary(y - x)
            t = stats.compare(y, x)
            entry[col.key] = {"standard": mean_sem(x)[0], "reduced": mean_sem(y)[0], "mean": cell["mean"], "lo": cell["lo"], "hi": cell["hi"], "p": t.p,
                              "holds": t.holds(stats.alpha)}
        out["methods"][m] = entry
    return out


def _num(v) -> float:
    return math.nan if v is None else float(v)


def settings_markdown(effect: dict, standard: dict, reduced: dict,
                      columns: Sequence[Column] = FAITHFULNESS) -> str:
    """Two tables: the paired differences (reduced − standard, interval, * where p < α) and the two means."""
    cols = columns
    alpha = effect["stats"].get("alpha", 0.05)
    lines = [f"Condition **{effect['condition']}**, {effect['clips']} clips held by both runs.",
             "",
             "Baseline settings: standard " + _describe(standard) + "; reduced " + _describe(reduced) + ".",
             "",
             "**Reduced − standard** (mean of the paired differences [95 % bootstrap interval]; * p < "
             f"{alpha}, {effect['stats'].get('test', 'signflip')} test over clips):",
             "",
             "| method | " + " | ".join(c.header for c in cols) + " | n |",
             "|---|" + "---:|" * (len(cols) + 1)]
    for m, entry in effect["methods"].items():
        cells = []
        for c in cols:
            e = entry[c.key]
            if not math.isfinite(e["mean"]):
                cells.append("–")
            elif e["lo"] == e["hi"] == e["mean"]:
                cells.append(fmt(e["mean"], c.decimals))
            else:
                cells.append(fmt_ci(e, c.decimals) + ("*" if e["holds"] else ""))
        lines.append(f"| {label(m)} | " + " | ".join(cells) + f" | {entry['n']} |")
    lines += ["", "Means on the same clips (standard → reduced):", "",
              "| method | " + " | ".join(c.header for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    for m, entry in effect["methods"].items():
        lines.append(f"| {label(m)} | " + " | ".join(
            f"{fmt(entry[c.key]['standard'], c.decimals)} → {fmt(entry[c.key]['reduced'], c.decimals)}"
            for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _describe(settings: dict) -> str:
    return baselines_text(settings.get("baselines", {}), omit=("key", "batch_size", "internal_batch_size"), sep=", ")


def compare_runs(standard_dir: str | Path, reduced_dir: str | Path, *, condition: str = "clean",
                 stats: StatsConfig | None = None) -> tuple[dict, str]:
    """Load, check and compare two runs; returns ``(effect, markdown)``."""
    s_set, s_rows = _load_run(Path(standard_dir))
    r_set, r_rows = _load_run(Path(reduced_dir))
    check_comparable(s_set, r_set)
    effect = settings_effect(s_rows, r_rows, condition=condition, stats=stats)
    if not effect["clips"]:
        raise LmacError(f"the two runs hold no clip of condition {condition!r} in common")
    effect["runs"] = {"standard": str(standard_dir), "reduced": str(reduced_dir)}
    return effect, settings_markdown(effect, s_set, r_set)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lmaczs.evaluation.settings_effect",
                                 description="how much the reduced baseline settings change each metric")
    ap.add_argument("standard", help="output folder of lmac-zs evaluate --baseline-settings standard")
    ap.add_argument("reduced", help="output folder of the same evaluation at --baseline-settings reduced")
    ap.add_argument("--condition", default="clean", help="condition to compare (default: clean)")
    ap.add_argument("--out", help="write the Markdown here (and the numbers beside it as .json; default: stdout)")
    args = ap.parse_args(argv)
    try:
        effect, md = compare_runs(args.standard, args.reduced, condition=args.condition)
        if args.out:
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out, md)
            atomic_write_text(out.with_suffix(".json"), json.dumps(strict(effect), indent=2))
        else:
            print(md)
    except LmacError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
