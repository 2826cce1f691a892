"""The evaluation's tables, built from its results logs: means with 95 % bootstrap intervals, and paired tests of
every LMAC-ZS decoder against the best baseline of each column.

Every cell is ``mean [lo, hi]`` over the clips (NaN values — SPS/COMP of an all-zero mask — left out). For each
column with a direction (↑ / ↓) the *best baseline* is the post-hoc method with the best mean; each decoder row
is tested against it over the clips both have (:func:`.stats.paired_test`), and the Markdown marks a difference
that holds at p < 0.05 with ▲ (the decoder is better) or ▼ (worse); the best baseline's cell carries °.
The tests are per cell, not corrected for the number of cells.

Tables are plain dicts (``tables.json``); :func:`markdown_tables`, :func:`localization_markdown`,
:func:`separation_markdown`, :func:`sanity_markdown` and :func:`csv_tables` render them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .methods import DECODERS, LABELS
from .separation import IRM
from .stats import StatsConfig, bootstrap_ci_of, finite


@dataclass(frozen=True)
class Column:
    key: str  # field of the log rows
    header: str
    decimals: int
    better: int  # +1 higher is better, -1 lower is better, 0 context only (not tested)


FAITHFULNESS: tuple[Column, ...] = (
    Column("AI", "AI ↑", 2, 1), Column("AD", "AD ↓", 2, -1), Column("AG", "AG ↑", 2, 1), Column("FF", "FF ↑", 3, 1),
    Column("Fid-In", "Fid-In ↑", 3, 1), Column("SPS", "SPS ↑", 3, 1), Column("COMP", "COMP ↓", 2, -1),
    Column("MM", "MM", 3, 0), Column("del_auc", "Del-AUC ↓", 3, -1), Column("ins_auc", "Ins-AUC ↑", 3, 1),
)
LOCALIZATION: tuple[Column, ...] = (
    Column("energy_share", "energy share ↑", 3, 1), Column("pointing", "pointing ↑", 3, 1), Column("MM", "MM", 3, 0),
)
SEPARATION: tuple[Column, ...] = (
    Column("sdr_a", "SI-SDR expl. vs A (dB) ↑", 2, 1), Column("sdri_a", "SI-SDRi expl. vs A (dB) ↑", 2, 1),
    Column("sdr_b", "SI-SDR residual vs B (dB) ↑", 2, 1), Column("sdri_b", "SI-SDRi residual vs B (dB) ↑", 2, 1),
    Column("MM", "MM", 3, 0),
)
# the former name of the faithfulness columns: (key, header, decimals)
COLUMNS = tuple((c.key, c.header, c.decimals) for c in FAITHFULNESS)
LOC_COLUMNS = tuple((c.key, c.header, c.decimals) for c in LOCALIZATION)
MARK_BETTER, MARK_WORSE, MARK_BEST = " ▲", " ▼", "°"


def label(key: str) -> str:
    return "ideal ratio mask (ceiling)" if key == IRM else LABELS.get(key, key)


# -- building ---------------------------------------------------------------------------------------------------
def _values(by_clip: dict[str, dict], clips: Sequence[str], key: str) -> np.ndarray:
    return np.array([float(by_clip[c].get(key, math.nan)) if c in by_clip and by_clip[c].get(key) is not None
                     else math.nan for c in clips], dtype=float)


def method_block(rows: Sequence[dict], clips: Sequence[str], methods: Sequence[str], columns: Sequence[Column],
                 stats: StatsConfig, *, not_baselines: Sequence[str] = ()) -> dict:
    """Cells and tests of one table: ``{"methods": {key: {col: summary, "n": rows}}, "tests": {col: {...}}}``.

    ``rows`` are log lines (``method``, ``clip`` and the column fields) already restricted to this table;
    ``clips`` fixes the clips and their order (the pairing of the tests). Decoders (:data:`DECODERS`) are
    tested against the best of the other methods, leaving out ``not_baselines`` (e.g. the ideal ratio mask).
    """
    wanted = set(clips)
    by = {m: {} for m in methods}
    for r in rows:
        if r["method"] in by and r["clip"] in wanted:
            by[r["method"]][r["clip"]] = r
    out: dict = {"methods": {}, "tests": {}}
    for m in methods:
        entry: dict = {"n": len(by[m])}
        for col in columns:
            entry[col.key] = stats.summary(_values(by[m], clips, col.key))
        out["methods"][m] = entry
    baselines = [m for m in methods if m not in DECODERS and m not in not_baselines]
    decoders = [m for m in methods if m in DECODERS]
    for col in columns:
        if col.better == 0:
            continue
        means = {b: out["methods"][b][col.key]["mean"] for b in baselines}
        means = {b: v for b, v in means.items() if math.isfinite(v)}
        if not means:
            continue
        best = max(means, key=lambda b: col.better * means[b])
        vs = {}
        for d in decoders:
            t = stats.compare(_values(by[d], clips, col.key), _values(by[best], clips, col.key))
            vs[d] = {"p": t.p, "diff": t.mean_diff, "n": t.n, "holds": t.holds(stats.alpha),
                     "better": bool(t.mean_diff * col.better > 0)}
        out["tests"][col.key] = {"best_baseline": best, "vs": vs}
    return out


def build_tables(rows: list[dict], conditions: Sequence[str], methods: Sequence[str], clips: Sequence[str],
                 n_prompts: int, stats: StatsConfig | None = None) -> dict:
    """Per condition: zero-shot accuracy and, per method, every column with its interval and tests; the cost of
    each method and Integrated Gradients' completeness error (when it ran)."""
    stats = stats or StatsConfig()
    wanted = set(clips)
    out: dict = {"conditions": {}, "methods": list(methods), "clips": len(clips), "prompts": n_prompts,
                 "stats": stats.describe()}
    for condition in conditions:
        mine = [r for r in rows if r["condition"] == condition and r["clip"] in wanted and r["method"] in methods]
        per_clip = {}
        for r in mine:
            per_clip.setdefault(r["clip"], 100.0 * float(r["correct"]))
        acc = stats.summary([per_clip[c] for c in clips if c in per_clip])
        entry = method_block(mine, clips, methods, FAITHFULNESS, stats)
        entry.update(accuracy=acc["mean"], accuracy_ci=[acc["lo"], acc["hi"]], clips=len(per_clip))
        for key in methods:
            mr = [r for r in mine if r["method"] == key]
            entry["methods"][key]["mask_s"] = float(np.mean([r["mask_s"] for r in mr])) if mr else math.nan
            entry["methods"][key]["total_s"] = float(np.mean([r["total_s"] for r in mr])) if mr else math.nan
        ig = [r.get("ig_completeness") for r in mine if r["method"] == "ig"]
        if any(v is not None for v in ig):
            v = finite([x for x in ig if x is not None])
            entry["ig_completeness"] = {**stats.summary(v), "median": float(np.median(v)) if len(v) else math.nan,
                                        "below_5pct": float((v < 0.05).mean()) if len(v) else math.nan}
        out["conditions"][condition] = entry
    return out


def localization_tables(rows: list[dict], pairings: Sequence[str], methods: Sequence[str], clips: Sequence[str],
                        stats: StatsConfig) -> dict:
    """Per pairing: how often A is predicted, A's frame share (chance), and the method block."""
    wanted = set(clips)
    out: dict = {"pairings": {}, "methods": list(methods)}
    for pairing in pairings:
        mine = [r for r in rows if r.get("pairing") == pairing and r["clip"] in wanted and r["method"] in methods]
        firsts: dict[str, dict] = {}
        for r in mine:
            firsts.setdefault(r["clip"], r)
        entry = method_block(mine, clips, methods, LOCALIZATION, stats)
        entry["items"] = len(firsts)
        if firsts:
            a_pred = stats.summary([100.0 * (r["pred"] == r["target"]) for r in firsts.values()])
            entry["a_predicted"] = a_pred["mean"]
            entry["a_predicted_ci"] = [a_pred["lo"], a_pred["hi"]]
            entry["region_fraction"] = float(np.mean([r["region_fraction"] for r in firsts.values()]))
            entry["partners"] = sorted({r["partner_class"] for r in firsts.values()})
        out["pairings"][pairing] = entry
    return out


def separation_table(rows: list[dict], methods: Sequence[str], clips: Sequence[str], stats: StatsConfig,
                     snr_db: float = 0.0) -> dict:
    keys = list(methods) + [IRM]
    wanted = set(clips)
    mine = [r for r in rows if r["clip"] in wanted and r["method"] in keys]
    out = method_block(mine, clips, keys, SEPARATION, stats, not_baselines=[IRM])
    firsts: dict[str, dict] = {}
    for r in mine:
        firsts.setdefault(r["clip"], r)
    out.update(items=len(firsts), snr_db=snr_db, methods_order=keys)
    if firsts:
        out["a_predicted"] = 100.0 * float(np.mean([r["pred"] == r["target"] for r in firsts.values()]))
        out["a_or_b_predicted"] = 100.0 * float(np.mean([r["pred"] in (r["target"], r["partner_target"])
                                                         for r in firsts.values()]))
    return out


def sanity_intervals(s: dict, stats: StatsConfig) -> dict:
    """95 % intervals of the sanity numbers (clips resampled; the Spearman ρ over the pairs of the resampled
    clips), keyed like the result: ``{check: {method: [lo, hi]}}``."""
    from .sanity import spearman

    out: dict = {"similarity": {}, "shutoff": {}, "prompt_randomisation": {}, "cascading": {}}
    pairs = s.get("pair_data", [])
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault(int(p.get("clip_index", 0)), []).append(i)
    clip_ids = sorted(groups)
    sims = np.array([p["similarity"] for p in pairs], dtype=float)

    def ci(values) -> list[float]:
        v = stats.summary(values)
        return [v["lo"], v["hi"]]

    for key in s["methods"]:
        if pairs and f"mm_{key}" in pairs[0]:
            mm = np.array([p[f"mm_{key}"] for p in pairs], dtype=float)

            def rho(idx: np.ndarray, mm=mm) -> float:
                rows = [j for k in idx for j in groups[clip_ids[k]]]
                return spearman(mm[rows], sims[rows])

            out["similarity"][key] = list(bootstrap_ci_of(len(clip_ids), rho, resamples=stats.resamples,
                                                          level=stats.level, seed=stats.seed))
        per = s["shutoff"][key].get("per_clip", {})
        out["shutoff"][key] = {name: ci(per[name]) for name in ("mm_pred", "mm_unrelated", "lower", "ssim")
                               if name in per}
        per = s["prompt_randomisation"][key].get("per_clip", {})
        if "ssim" in per:
            out["prompt_randomisation"][key] = ci(per["ssim"])
        casc = s["cascading"].get(key, {})
        if "per_clip" in casc:
            out["cascading"][key] = [ci(v) for v in casc["per_clip"]]
    return out


# -- rendering --------------------------------------------------------------------------------------------------
def fmt(v: float | None, decimals: int) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{decimals}f}"


def fmt_ci(cell: dict, decimals: int) -> str:
    """``mean [lo, hi]`` (just the mean when the interval is undefined)."""
    m = fmt(cell.get("mean"), decimals)
    lo, hi = cell.get("lo"), cell.get("hi")
    if m == "–" or lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return m
    return f"{m} [{fmt(lo, decimals)}, {fmt(hi, decimals)}]"


def _marks(block: dict, key: str, col: Column) -> str:
    test = block.get("tests", {}).get(col.key)
    if not test:
        return ""
    if test["best_baseline"] == key:
        return MARK_BEST
    t = test["vs"].get(key)
    if t and t["holds"]:
        return MARK_BETTER if t["better"] else MARK_WORSE
    return ""


def block_markdown(block: dict, methods: Sequence[str], columns: Sequence[Column]) -> list[str]:
    lines = ["| method | " + " | ".join(c.header for c in columns) + " | n |", "|---|" + "---:|" * (len(columns) + 1)]
    for key in methods:
        stats = block["methods"][key]
        cells = [fmt_ci(stats[c.key], c.decimals) + _marks(block, key, c) for c in columns]
        lines.append(f"| {label(key)} | " + " | ".join(cells) + f" | {stats['n']} |")
    return lines


def baselines_text(baselines: dict[str, dict], omit: Sequence[str] = ("key",), sep: str = "; ") -> str:
    """``name {options}`` of every baseline, as recorded in a run's settings, leaving out the ``omit`` options."""
    return sep.join(f"{k} {json.dumps({o: v for o, v in d.items() if o not in omit})}" for k, d in baselines.items())


def legend(tables: dict) -> str:
    s = tables.get("stats", {})
    test = {"signflip": "paired sign-flip permutation test", "wilcoxon": "Wilcoxon signed-rank test"}.get(
        s.get("test", "signflip"), s.get("test"))
    return (f"Cells: mean [{100 * s.get('level', 0.95):.0f} % bootstrap interval, {s.get('bootstrap_resamples', 1000)} "
            f"resamples of the clips, seed {s.get('seed', 0)}]. ▲ / ▼: the LMAC-ZS row is better / worse than the "
            f"best baseline of the column (°) at p < {s.get('alpha', 0.05)} ({test} over clips, two-sided, per "
            "cell, uncorrected).")


def markdown_tables(tables: dict, heading: str = "###") -> str:
    """The faithfulness tables, one per condition under a ``heading``-level title."""
    lines = []
    for condition, entry in tables["conditions"].items():
        lo, hi = entry.get("accuracy_ci", [math.nan, math.nan])
        lines.append(f"{heading} {condition} — zero-shot accuracy {fmt(entry['accuracy'], 1)} % "
                     f"[{fmt(lo, 1)}, {fmt(hi, 1)}] ({entry['clips']} clips, {tables['prompts']}-way)\n")
        lines += block_markdown(entry, tables["methods"], FAITHFULNESS)
        lines.append("")
    lines.append(legend(tables) + "\n")
    return "\n".join(lines)


def csv_tables(tables: dict) -> str:
    """One row per (part, group, method): mean, interval, s.e.m. of every column and the p of each test."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["part", "group", "method", "n", "column", "mean", "lo", "hi", "sem", "best_baseline", "p",
                "holds"])

    def emit(part: str, group: str, block: dict, methods: Sequence[str], columns: Sequence[Column]) -> None:
        for key in methods:
            cells = block["methods"][key]
            for col in columns:
                c = cells[col.key]
                test = block.get("tests", {}).get(col.key, {})
                t = test.get("vs", {}).get(key, {})
                w.writerow([part, group, key, cells["n"], col.key] + [f"{c[k]:.6g}" for k in ("mean", "lo", "hi", "sem")]
                           + [test.get("best_baseline", ""), f"{t['p']:.4g}" if t else "",
                              int(t["holds"]) if t else ""])

    for condition, entry in tables["conditions"].items():
        emit("faithfulness", condition, entry, tables["methods"], FAITHFULNESS)
    if "localization" in tables:
        loc = tables["localization"]
        for pairing, entry in loc["pairings"].items():
            emit("localization", pairing, entry, loc["methods"], LOCALIZATION)
    if "separation" in tables:
        sep = tables["separation"]
        emit("separation", "mixture 0 dB", sep, sep["methods_order"], SEPARATION)
    return buf.getvalue()


def localization_markdown(loc: dict, dataset_label: str = "A", heading: str = "###") -> str:
    """One table per pairing, each under a ``heading``-level title."""
    from .localization import PAIRING_LABELS

    lines = []
    for pairing, entry in loc["pairings"].items():
        lo, hi = entry.get("a_predicted_ci", [math.nan, math.nan])
        lines.append(f"{heading} {dataset_label} + {PAIRING_LABELS.get(pairing, pairing)}\n")
        lines.append(f"{entry['items']} spliced items (clip A | partner B, equal loudness); every method explains "
                     f"A's prompt. A predicted on {fmt(entry.get('a_predicted', math.nan), 1)} % "
                     f"[{fmt(lo, 1)}, {fmt(hi, 1)}] of items; chance energy share = A's frame fraction = "
                     f"{fmt(entry.get('region_fraction', math.nan), 3)}.\n")
        lines += block_markdown(entry, loc["methods"], LOCALIZATION)
        lines.append("")
    return "\n".join(lines)


def separation_markdown(sep: dict) -> str:
    lines = [f"{sep['items']} overlapped pairs (A + B of another class, {fmt(sep.get('snr_db', 0.0), 0)} dB); every "
             f"method explains A's prompt, the explanation is scored against A and the residual against B. The model "
             f"predicts A on {fmt(sep.get('a_predicted', math.nan), 1)} % of mixtures (A or B: "
             f"{fmt(sep.get('a_or_b_predicted', math.nan), 1)} %).\n"]
    lines += block_markdown(sep, sep["methods_order"], SEPARATION)
    return "\n".join(lines) + "\n"


def sanity_markdown(s: dict) -> str:
    keys = s["methods"]
    ci = s.get("intervals", {})
    lab = [label(k) for k in keys]

    def cell(v: float, interval: Sequence[float] | None) -> str:
        if interval is None or len(interval) != 2:
            return fmt(v, 3)
        return fmt_ci({"mean": v, "lo": interval[0], "hi": interval[1]}, 3)

    def row(title: str, values: list[str]) -> str:
        return f"| {title} | " + " | ".join(values) + " |"

    sh = ci.get("shutoff", {})
    lines = [f"{s['clips']} clean clips, {s['pairs']} (clip, prompt) pairs.\n",
             "| check | " + " | ".join(lab) + " |", "|---|" + "---:|" * len(keys),
             row("Spearman ρ(mask mean, similarity)", [cell(s["similarity"][k]["spearman"], ci.get("similarity", {})
                                                           .get(k)) for k in keys]),
             row("mask mean: predicted prompt", [cell(s["shutoff"][k]["mm_pred"], sh.get(k, {}).get("mm_pred"))
                                                 for k in keys]),
             row("mask mean: unrelated prompt", [cell(s["shutoff"][k]["mm_unrelated"],
                                                      sh.get(k, {}).get("mm_unrelated")) for k in keys]),
             row("share of clips with a smaller mask for the unrelated prompt",
                 [cell(s["shutoff"][k]["frac_lower"], sh.get(k, {}).get("lower")) for k in keys]),
             row("SSIM predicted vs unrelated prompt", [cell(s["shutoff"][k]["ssim"], sh.get(k, {}).get("ssim"))
                                                        for k in keys]),
             row("SSIM under shuffled prompt embeddings",
                 [cell(s["prompt_randomisation"][k]["ssim"], ci.get("prompt_randomisation", {}).get(k))
                  for k in keys])]
    if "skipped" in s["cascading"]:
        lines.append(f"| cascading randomisation | skipped: {s['cascading']['skipped']} |" + " |" * (len(keys) - 1))
    for n in s["cascading"]["randomised_blocks"][1:]:
        lines.append(row(f"SSIM, {n} deepest block(s) randomised",
                         [cell(s["cascading"][k]["ssim"][n], (ci.get("cascading", {}).get(k) or [None] * (n + 1))[n])
                          for k in keys]))
    figs = s.get("figures", {})
    lines.append("")
    lines += [f"![{name}]({path})" for name, path in figs.items()]
    return "\n".join(lines) + "\n"


def cost_markdown(tables: dict) -> str:
    conds = list(tables["conditions"])
    lines = ["| method | " + " | ".join(conds) + " |", "|---|" + "---:|" * len(conds)]
    for key in tables["methods"]:
        lines.append(f"| {label(key)} | " + " | ".join(
            fmt(tables["conditions"][c]["methods"][key]["mask_s"], 3) for c in conds) + " |")
    return "\n".join(lines) + "\n"


def completeness_markdown(tables: dict) -> str:
    """IG's completeness error per condition ('' when IG did not run)."""
    conds = [c for c, e in tables["conditions"].items() if "ig_completeness" in e]
    if not conds:
        return ""
    lines = ["| condition | mean [95 % CI] | median | share below 5 % | n |", "|---|---:|---:|---:|---:|"]
    for c in conds:
        e = tables["conditions"][c]["ig_completeness"]
        lines.append(f"| {c} | {fmt_ci(e, 3)} | {fmt(e['median'], 3)} | {fmt(e['below_5pct'], 2)} | {e['n']} |")
    return "\n".join(lines) + "\n"
