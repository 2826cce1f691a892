"""``lmac-zs evaluate``: the paper's faithfulness tables on ESC-50 split B, sanity checks and localisation.

    lmac-zs evaluate --data ../shared/data/esc50 --out eval/            # embedded esc50-eval model, all methods
    lmac-zs evaluate --clap tiny --decoder runs/x --limit 4 --out /tmp/e  # a quick run

Protocol (paper-notes §5): every clip of the evaluation split (default: split B's odd-target clips, classes the
esc50-eval decoder never saw) is classified zero-shot against the 50 prompts ``"this is the sound of <class>"``
(:func:`lmaczs.esc50.eval_prompt`) under each condition (clean; contaminated at 3 dB by another clip, white noise
or LJ Speech, see :mod:`lmaczs.conditions`). ĉ is the prediction on the unmasked input; LMAC-ZS is conditioned
on ĉ's prompt and the baselines explain ĉ's similarity logit. Masked-in (M ⊙ X) and masked-out ((1 − M) ⊙ X)
spectrograms go back through the backend (InputTf) and the per-example metrics of :mod:`lmaczs.metrics` are
appended, one JSON line per (condition, method, clip), to ``results.jsonl``; a rerun skips the lines already
there. Tables (Markdown, CSV, JSON) and ``report.md`` are rebuilt from that file at the end.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import random
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

from .checkpoint import atomic_write_text, load_decoder
from .clap import EMBEDDED, ClapBackend
from .conditions import CONDITIONS, SNR_DB, Conditions, check_conditions
from .errors import CheckpointError, DataError, LmacError
from .esc50 import Esc50Clip, class_names, eval_prompt, read_esc50, select
from .localization import energy_share, localization_pairs, pointing_game, region_frames, splice
from .methods import ABLATION, ALL_METHODS, BASELINE_DEFAULTS, LABELS, LMACZS, MaskMethod, build_methods, \
    parse_methods
from .metrics import deletion_auc, insertion_auc, per_example_metrics, zero_shot_probs

RESULTS, LOCALIZATION = "results.jsonl", "localization.jsonl"
CONFIG = "config.json"

# (key in results.jsonl, table header, decimals)
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("AI", "AI ↑", 2), ("AD", "AD ↓", 2), ("AG", "AG ↑", 2), ("FF", "FF ↑", 3), ("Fid-In", "Fid-In ↑", 3),
    ("SPS", "SPS ↑", 3), ("COMP", "COMP ↓", 2), ("MM", "MM", 3), ("del_auc", "Del-AUC ↓", 3),
    ("ins_auc", "Ins-AUC ↑", 3),
)
LOC_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("energy_share", "energy share ↑", 3), ("pointing", "pointing ↑", 3), ("MM", "MM", 3),
)


@dataclass
class EvalConfig:
    clap: Optional[str] = None  # None: the embedded esc50-eval model (or the decoder run's backend)
    decoder: Optional[str] = None
    data: str = "../shared/data/esc50"
    speech: Optional[str] = None  # None: <data>/../ljspeech
    out: str = "eval"
    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    conditions: list[str] = field(default_factory=lambda: list(CONDITIONS))
    split: str = "B"
    targets: str = "odd"
    limit: Optional[int] = None
    seed: int = 0
    snr_db: float = SNR_DB
    batch_size: int = 8
    curve_steps: int = 4  # deletion/insertion curve steps (0: skip the curves)
    curve_conditions: list[str] = field(default_factory=lambda: ["clean"])  # where the curves are computed
    baseline_options: dict = field(default_factory=dict)  # {method: {option: value}} over BASELINE_DEFAULTS
    sanity: bool = False
    sanity_clips: int = 16
    sanity_prompts: int = 8
    localization: bool = False
    ablation_decoder: Optional[str] = None
    device: str = "cpu"
    threads: Optional[int] = None
    progress: bool = True
    command: str = ""

    # settings that change per-example results: an existing results file must have been written with these
    RESULT_KEYS = ("model", "data", "split", "targets", "seed", "snr_db", "curve_steps", "curve_conditions",
                   "baselines")


# -- loading ------------------------------------------------------------------------------------------------
def _digest(module: torch.nn.Module) -> str:
    h = hashlib.sha1()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def load_models(cfg: EvalConfig) -> tuple[ClapBackend, object, object, dict]:
    """``(backend, decoder, ablation decoder or None, identity)`` for a config (backend in eval mode)."""
    from .explain import Explainer

    if cfg.decoder:
        ex = Explainer.load(cfg.clap, cfg.decoder, device=cfg.device)
        source = str(Path(cfg.decoder))
    else:
        name = cfg.clap or "esc50-eval"
        if name not in EMBEDDED:
            raise LmacError(f"backend {name!r} needs a trained decoder: pass --decoder RUN_DIR")
        ex = Explainer.from_pretrained(name, device=cfg.device)
        source = f"embedded:{name}"
    ablation = None
    if cfg.ablation_decoder:
        dec, _ = load_decoder(Path(cfg.ablation_decoder))
        ablation = Explainer(ex.clap, dec, device=cfg.device).decoder  # checks the shapes match the backend
    ident = {"clap": ex.clap.spec, "domain": ex.clap.domain_name, "backend_digest": _digest(ex.clap),
             "decoder": source, "decoder_digest": _digest(ex.decoder),
             "ablation_decoder": cfg.ablation_decoder, "ablation_digest": _digest(ablation) if ablation else None}
    return ex.clap, ex.decoder, ablation, ident


def _same_model(saved: dict, now: dict) -> bool:
    """Results may be extended when the weights are the same (paths may move; an ablation decoder may be added
    later, but not swapped for another)."""
    keys = ("clap", "domain", "backend_digest", "decoder_digest")
    if any(saved.get(k) != now.get(k) for k in keys):
        return False
    a, b = saved.get("ablation_digest"), now.get("ablation_digest")
    return a is None or b is None or a == b


def eval_clips(cfg: EvalConfig) -> tuple[list[Esc50Clip], list[Esc50Clip], list[str], dict[int, int]]:
    """``(evaluated clips, contaminant pool, prompts, target → prompt index)``."""
    if cfg.limit is not None and cfg.limit < 1:
        raise DataError(f"--limit must be at least 1, got {cfg.limit}")
    every = read_esc50(cfg.data)
    names = class_names(every)
    index = {t: i for i, t in enumerate(sorted({c.target for c in every}))}
    pool = select(every, splits=[cfg.split])
    clips = select(pool, targets=cfg.targets)
    if not clips:
        raise DataError(f"no clips of split {cfg.split!r} ({cfg.targets} targets) in {cfg.data} "
                        "(is meta/splits.csv there?)")
    if cfg.limit is not None:
        clips = clips[: max(0, cfg.limit)]
    return clips, pool, [eval_prompt(n) for n in names], index


def speech_dir(cfg: EvalConfig) -> Path:
    return Path(cfg.speech) if cfg.speech else Path(cfg.data).resolve().parent / "ljspeech"


# -- results files --------------------------------------------------------------------------------------------
class ResultLog:
    """Append-only JSON lines keyed by a tuple of fields; a partial last line (a crash) is dropped."""

    def __init__(self, path: Path, key_fields: Sequence[str]):
        self.path = Path(path)
        self.key_fields = tuple(key_fields)
        self.rows: list[dict] = []
        self.done: set[tuple] = set()
        if self.path.is_file():
            text = self.path.read_text()
            if text and not text.endswith("\n"):  # interrupted mid-line: drop the fragment
                text = text[: text.rfind("\n") + 1]
                self.path.write_text(text)
            for n, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except ValueError:
                        raise CheckpointError(f"{self.path} line {n} is corrupt; delete that line to resume") \
                            from None
                    self.rows.append(row)
                    self.done.add(self.key(row))

    def key(self, row: dict) -> tuple:
        return tuple(row[k] for k in self.key_fields)

    def has(self, *key) -> bool:
        return tuple(key) in self.done

    def append(self, rows: Iterable[dict]) -> None:
        rows = list(rows)
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            for row in rows:
                fh.write(json.dumps(row, allow_nan=True) + "\n")
            fh.flush()
        for row in rows:
            self.rows.append(row)
            self.done.add(self.key(row))


def check_out_dir(out: Path, settings: dict) -> None:
    """Refuse to append to results written with other result-changing settings; record them otherwise."""
    path = out / CONFIG
    if path.is_file() and ((out / RESULTS).is_file() or (out / LOCALIZATION).is_file()):
        saved = json.loads(path.read_text()).get("result_settings", {})
        changed = [k for k in EvalConfig.RESULT_KEYS if k != "model" and saved.get(k) != settings.get(k)]
        if not _same_model(saved.get("model", {}), settings["model"]):
            changed.insert(0, "model")
        if changed:
            raise CheckpointError(f"{out} holds results of another evaluation (settings differ: {changed}); "
                                  "choose another --out")


def _f(v: torch.Tensor | float) -> float:
    v = float(v)
    return v if math.isfinite(v) else float("nan")


# -- the main evaluation ------------------------------------------------------------------------------------
def _curve_probs(backend: ClapBackend, text: torch.Tensor, x: torch.Tensor, p_clean: torch.Tensor,
                 p_zero: torch.Tensor):
    """``probs_fn`` for the deletion/insertion curves that reuses the clean input's probabilities and
    silence's (the curves' end points, identical for every method) instead of recomputing them."""

    def fn(z: torch.Tensor) -> torch.Tensor:
        out = torch.empty(z.shape[0], p_clean.shape[1], device=z.device, dtype=p_clean.dtype)
        same = (z == x).flatten(1).all(1)
        zero = (z == 0).flatten(1).all(1) & ~same
        rest = ~(same | zero)
        out[same] = p_clean[same]
        out[zero] = p_zero.expand(int(zero.sum()), -1)
        if rest.any():
            out[rest] = zero_shot_probs(backend, z[rest], text)
        return out

    return fn


@torch.no_grad()
def classify_batch(backend: ClapBackend, x: torch.Tensor, text: torch.Tensor):
    """The unmasked forward: ``(encoding, p (B, P), ĉ (B,))`` for ``x (B, T, F)``."""
    enc = backend.encode_spec(x)
    p = (backend.logit_scale * enc.embedding @ text.T.to(enc.embedding)).softmax(dim=-1)
    return enc, p, p.argmax(dim=1)


@torch.no_grad()
def score_method(backend: ClapBackend, method: MaskMethod, idx: Sequence[int], x: torch.Tensor, enc, p: torch.Tensor,
                 c: torch.Tensor, text: torch.Tensor, p_zero: torch.Tensor, curve_steps: int
                 ) -> tuple[dict[str, torch.Tensor], float, float]:
    """Explain rows ``idx`` of a batch with one method and score them.

    Args:
        x: ``(B, T, F)``; enc, p, c: :func:`classify_batch` of x; text: ``(P, D)``; p_zero: ``(1, P)``
            probabilities of silence.
    Returns:
        ``(metrics {name: (n,)}, mask seconds per clip, total seconds per clip)``.
    """
    sel = torch.tensor(list(idx), device=x.device)
    xs, cs, ps = x[sel], c[sel], p[sel]
    t0 = time.perf_counter()
    masks = method(backend, xs, text, cs, hidden=[h[sel] for h in enc.hidden])
    t_mask = time.perf_counter() - t0
    p_in = zero_shot_probs(backend, masks * xs, text)
    p_out = zero_shot_probs(backend, (1 - masks) * xs, text)
    values = per_example_metrics(ps, p_in, p_out, cs, masks)
    if curve_steps > 0:
        fn = _curve_probs(backend, text, xs, ps, p_zero)
        values["del_auc"] = deletion_auc(fn, xs, masks, cs, steps=curve_steps)
        values["ins_auc"] = insertion_auc(fn, xs, masks, cs, steps=curve_steps)
    values["p_pred"] = ps.gather(1, cs[:, None]).squeeze(1)
    values["p_in"] = p_in.gather(1, cs[:, None]).squeeze(1)
    values["p_out"] = p_out.gather(1, cs[:, None]).squeeze(1)
    return values, t_mask / len(idx), (time.perf_counter() - t0) / len(idx)


def run_evaluation(cfg: EvalConfig) -> dict:
    """Run (or resume) an evaluation; write ``results.jsonl``, the tables and ``report.md`` into ``cfg.out``.
    Returns the tables (as written to ``tables.json``)."""
    from tqdm.auto import tqdm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    conditions = check_conditions(cfg.conditions)
    keys = parse_methods(cfg.methods)
    if cfg.ablation_decoder and ABLATION not in keys:
        keys.insert(keys.index(LMACZS) + 1 if LMACZS in keys else 0, ABLATION)
    clips, pool, prompts, index = eval_clips(cfg)
    backend, decoder, ablation, ident = load_models(cfg)
    methods = build_methods(keys, decoder, ablation, cfg.baseline_options,
                            {LMACZS: ident["decoder"], ABLATION: cfg.ablation_decoder or ""})
    settings = {"model": ident, "data": str(Path(cfg.data).resolve()), "split": cfg.split, "targets": cfg.targets,
                "seed": cfg.seed, "snr_db": cfg.snr_db, "curve_steps": cfg.curve_steps,
                "curve_conditions": sorted(cfg.curve_conditions) if cfg.curve_steps > 0 else [],
                "baselines": {k: m.describe() for k, m in build_methods(
                    [k for k in ALL_METHODS if k != LMACZS], None, None, cfg.baseline_options).items()}}
    out.mkdir(parents=True, exist_ok=True)
    check_out_dir(out, settings)
    atomic_write_text(out / CONFIG, json.dumps({"result_settings": settings, "config": _jsonable(cfg)}, indent=2))

    device = torch.device(cfg.device)
    cond = Conditions(backend, pool, cfg.seed, speech_dir(cfg) if "speech" in conditions else None, cfg.snr_db)
    with torch.no_grad():
        text = backend.embed_text(prompts).to(device)
        t, f = backend.mask_shape()
        p_zero = zero_shot_probs(backend, torch.zeros(1, t, f, device=device), text)
    log = ResultLog(out / RESULTS, ("condition", "method", "clip"))
    todo = sum(not log.has(c, m, clip.filename) for c in conditions for m in keys for clip in clips)
    bar = tqdm(total=todo, desc="evaluating", unit="expl", disable=not cfg.progress)
    started = time.perf_counter()
    for condition in conditions:
        for s in range(0, len(clips), cfg.batch_size):
            batch = clips[s:s + cfg.batch_size]
            pending = {m: [i for i, clip in enumerate(batch) if not log.has(condition, m, clip.filename)]
                       for m in keys}
            if not any(pending.values()):
                continue
            made = [cond.apply(condition, clip) for clip in batch]
            waves = torch.stack([w for w, _ in made]).to(device)
            x, _ = backend.analyze(backend.prepare(waves))
            enc, p, c = classify_batch(backend, x, text)
            steps = cfg.curve_steps if condition in cfg.curve_conditions else 0
            for key in keys:  # one method at a time, each written as soon as it is done
                if not pending[key]:
                    continue
                values, t_mask, t_total = score_method(backend, methods[key], pending[key], x, enc, p, c, text,
                                                       p_zero, steps)
                rows = []
                for j, i in enumerate(pending[key]):
                    clip = batch[i]
                    label = index[clip.target]
                    rows.append({"condition": condition, "method": key, "clip": clip.filename, "label": label,
                                 "pred": int(c[i]), "correct": int(c[i]) == label, "contaminant": made[i][1],
                                 **{k: _f(v[j]) for k, v in values.items()},
                                 "mask_s": t_mask, "total_s": t_total})
                log.append(rows)
                bar.update(len(rows))
    bar.close()
    elapsed = time.perf_counter() - started
    tables = build_tables(log.rows, conditions, keys, [c.filename for c in clips], len(prompts))
    tables.update(elapsed_s=elapsed, settings=settings, command=cfg.command)
    write_outputs(out, tables)  # the faithfulness tables are on disk before the optional parts run

    if cfg.localization:
        tables["localization"] = run_localization(cfg, backend, methods, keys, clips, pool, cond, text, index,
                                                  out)
        write_outputs(out, tables)
    if cfg.sanity:
        tables["sanity"] = run_sanity_checks(cfg, backend, decoder, ablation, clips, cond, text, prompts, index,
                                             out)
        write_outputs(out, tables)
    return tables


def _jsonable(cfg: EvalConfig) -> dict:
    return {k: v for k, v in asdict(cfg).items() if k not in ("progress",)}


# -- localisation and sanity ----------------------------------------------------------------------------------
def run_localization(cfg: EvalConfig, backend: ClapBackend, methods: dict[str, MaskMethod], keys: list[str],
                     clips: list[Esc50Clip], pool: list[Esc50Clip], cond: Conditions, text: torch.Tensor,
                     index: dict[int, int], out: Path) -> dict:
    """Spliced two-class items (:mod:`lmaczs.localization`), every method explaining class A's prompt."""
    from tqdm.auto import tqdm

    device = torch.device(cfg.device)
    pairs = localization_pairs(clips, pool, cfg.seed)
    log = ResultLog(out / LOCALIZATION, ("method", "clip"))
    hop = backend.front.stft.hop_length
    todo = sum(not log.has(m, a.filename) for m in keys for a, _, _ in pairs)
    bar = tqdm(total=todo, desc="localisation", unit="expl", disable=not cfg.progress)
    for s in range(0, len(pairs), cfg.batch_size):
        batch = pairs[s:s + cfg.batch_size]
        pending = {m: [i for i, (a, _, _) in enumerate(batch) if not log.has(m, a.filename)] for m in keys}
        if not any(pending.values()):
            continue
        spliced = [splice(cond.window(a.path), cond.window(b.path), backend.num_samples, first, hop)
                   for a, b, first in batch]
        waves = torch.stack([sp.wave for sp in spliced]).to(device)
        with torch.no_grad():
            x, _ = backend.analyze(backend.prepare(waves))
            enc, _, pred = classify_batch(backend, x, text)
        region = torch.stack([region_frames(sp.span, x.shape[1], hop) for sp in spliced]).to(device)
        targets = torch.tensor([index[a.target] for a, _, _ in batch], device=device)
        for key in keys:
            idx = pending[key]
            if not idx:
                continue
            sel = torch.tensor(idx, device=device)
            masks = methods[key](backend, x[sel], text, targets[sel], hidden=[h[sel] for h in enc.hidden])
            share = energy_share(masks, region[sel])
            point = pointing_game(masks, region[sel])
            mm = masks.flatten(1).mean(1)
            rows = []
            for j, i in enumerate(idx):
                a, b, first = batch[i]
                rows.append({"method": key, "clip": a.filename, "partner": b.filename, "a_first": first,
                             "target": index[a.target], "partner_target": index[b.target], "pred": int(pred[i]),
                             "region_fraction": float(region[i].double().mean()),
                             "energy_share": _f(share[j]), "pointing": _f(point[j]), "MM": _f(mm[j])})
            log.append(rows)
            bar.update(len(rows))
    bar.close()
    names = {a.filename for a, _, _ in pairs}
    rows = [r for r in log.rows if r["clip"] in names and r["method"] in keys]
    table = {"pairs": len(pairs), "methods": {}}
    firsts = {r["clip"]: r for r in rows}
    if firsts:
        table["a_predicted"] = 100 * float(np.mean([r["pred"] == r["target"] for r in firsts.values()]))
        table["a_or_b_predicted"] = 100 * float(np.mean([r["pred"] in (r["target"], r["partner_target"])
                                                         for r in firsts.values()]))
        table["region_fraction"] = float(np.mean([r["region_fraction"] for r in firsts.values()]))
    for key in keys:
        mine = [r for r in rows if r["method"] == key]
        table["methods"][key] = {col: _mean_sem([r[col] for r in mine]) for col, _, _ in LOC_COLUMNS}
        table["methods"][key]["n"] = len(mine)
    return table


def run_sanity_checks(cfg: EvalConfig, backend: ClapBackend, decoder, ablation, clips: list[Esc50Clip],
                      cond: Conditions, text: torch.Tensor, prompts: list[str], index: dict[int, int],
                      out: Path) -> dict:
    """The checks of :mod:`lmaczs.sanity` on a seeded sample of the clean clips."""
    from .sanity import SANITY_METHODS, run_sanity

    keys = [k for k in SANITY_METHODS if k != ABLATION or ablation is not None]
    methods = build_methods(keys, decoder, ablation, cfg.baseline_options)
    chosen = sorted(random.Random(cfg.seed).sample(range(len(clips)), min(cfg.sanity_clips, len(clips))))
    sample = [clips[i] for i in chosen]
    waves = torch.stack([cond.window(c.path) for c in sample]).to(cfg.device)
    with torch.no_grad():
        x, _ = backend.analyze(backend.prepare(waves))
    labels = torch.tensor([index[c.target] for c in sample])
    return run_sanity(backend, methods, x, labels, text, prompts, out, seed=cfg.seed,
                      prompts_per_clip=cfg.sanity_prompts, batch=cfg.batch_size,
                      names=[c.filename for c in sample], progress=cfg.progress)


# -- tables ---------------------------------------------------------------------------------------------------
def _mean_sem(values: Sequence[float]) -> dict:
    a = np.asarray(values, dtype=float)
    a = a[~np.isnan(a)]
    if not len(a):
        return {"mean": float("nan"), "sem": float("nan")}
    return {"mean": float(a.mean()), "sem": float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else float("nan")}


def build_tables(rows: list[dict], conditions: Sequence[str], methods: Sequence[str], clips: Sequence[str],
                 n_prompts: int) -> dict:
    """Per condition: zero-shot accuracy and, per method, mean ± s.e.m. of every column over the clips."""
    wanted = set(clips)
    out: dict = {"conditions": {}, "methods": list(methods), "clips": len(clips), "prompts": n_prompts}
    for condition in conditions:
        mine = [r for r in rows if r["condition"] == condition and r["clip"] in wanted and r["method"] in methods]
        per_clip = {r["clip"]: r["correct"] for r in mine}
        entry = {"accuracy": 100 * float(np.mean(list(per_clip.values()))) if per_clip else float("nan"),
                 "clips": len(per_clip), "methods": {}}
        for key in methods:
            mr = [r for r in mine if r["method"] == key]
            stats = {col: _mean_sem([r.get(col, float("nan")) for r in mr]) for col, _, _ in COLUMNS}
            stats["n"] = len(mr)
            stats["mask_s"] = float(np.mean([r["mask_s"] for r in mr])) if mr else float("nan")
            stats["total_s"] = float(np.mean([r["total_s"] for r in mr])) if mr else float("nan")
            entry["methods"][key] = stats
        out["conditions"][condition] = entry
    return out


def _fmt(v: float, decimals: int) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{decimals}f}"


def markdown_tables(tables: dict) -> str:
    lines = []
    for condition, entry in tables["conditions"].items():
        lines.append(f"### {condition} — zero-shot accuracy {_fmt(entry['accuracy'], 1)} % "
                     f"({entry['clips']} clips, {tables['prompts']}-way)\n")
        lines.append("| method | " + " | ".join(h for _, h, _ in COLUMNS) + " | n |")
        lines.append("|---|" + "---:|" * (len(COLUMNS) + 1))
        for key, stats in entry["methods"].items():
            cells = [_fmt(stats[c]["mean"], d) for c, _, d in COLUMNS]
            lines.append(f"| {LABELS.get(key, key)} | " + " | ".join(cells) + f" | {stats['n']} |")
        lines.append("")
    return "\n".join(lines)


def csv_tables(tables: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["condition", "accuracy", "clips", "method", "n"] + [x for c, _, _ in COLUMNS
                                                                     for x in (c, f"{c}_sem")] + ["mask_s"])
    for condition, entry in tables["conditions"].items():
        for key, stats in entry["methods"].items():
            w.writerow([condition, f"{entry['accuracy']:.4f}", entry["clips"], key, stats["n"]]
                       + [f"{stats[c][m]:.6g}" for c, _, _ in COLUMNS for m in ("mean", "sem")]
                       + [f"{stats['mask_s']:.4g}"])
    return buf.getvalue()


def localization_markdown(loc: dict) -> str:
    lines = [f"{loc['pairs']} spliced items (clip A | clip B of another class, equal loudness); every method "
             f"explains A's prompt. A predicted on {_fmt(loc.get('a_predicted', float('nan')), 1)} % of items "
             f"(A or B: {_fmt(loc.get('a_or_b_predicted', float('nan')), 1)} %); chance energy share = A's "
             f"frame fraction = {_fmt(loc.get('region_fraction', float('nan')), 3)}.\n",
             "| method | " + " | ".join(h for _, h, _ in LOC_COLUMNS) + " | n |",
             "|---|" + "---:|" * (len(LOC_COLUMNS) + 1)]
    for key, stats in loc["methods"].items():
        cells = [f"{_fmt(stats[c]['mean'], d)} ± {_fmt(stats[c]['sem'], d)}" for c, _, d in LOC_COLUMNS]
        lines.append(f"| {LABELS.get(key, key)} | " + " | ".join(cells) + f" | {stats['n']} |")
    return "\n".join(lines) + "\n"


def sanity_markdown(s: dict) -> str:
    keys = s["methods"]
    lab = [LABELS.get(k, k) for k in keys]
    lines = [f"{s['clips']} clean clips, {s['pairs']} (clip, prompt) pairs.\n",
             "| check | " + " | ".join(lab) + " |", "|---|" + "---:|" * len(keys),
             "| Spearman ρ(mask mean, similarity) | " + " | ".join(_fmt(s["similarity"][k]["spearman"], 3)
                                                          for k in keys) + " |",
             "| mask mean: predicted prompt | " + " | ".join(_fmt(s["shutoff"][k]["mm_pred"], 3) for k in keys) + " |",
             "| mask mean: unrelated prompt | " + " | ".join(_fmt(s["shutoff"][k]["mm_unrelated"], 3)
                                                    for k in keys) + " |",
             "| share of clips with a smaller mask for the unrelated prompt | "
             + " | ".join(_fmt(s["shutoff"][k]["frac_lower"], 3) for k in keys) + " |",
             "| SSIM predicted vs unrelated prompt | " + " | ".join(_fmt(s["shutoff"][k]["ssim"], 3)
                                                             for k in keys) + " |",
             "| SSIM under shuffled prompt embeddings | "
             + " | ".join(_fmt(s["prompt_randomisation"][k]["ssim"], 3) for k in keys) + " |"]
    if "skipped" in s["cascading"]:
        lines.append(f"| cascading randomisation | skipped: {s['cascading']['skipped']} |" + " |" * (len(keys) - 1))
    for n in s["cascading"]["randomised_blocks"][1:]:
        lines.append(f"| SSIM, {n} deepest block(s) randomised | "
                     + " | ".join(_fmt(s["cascading"][k]["ssim"][n], 3) for k in keys) + " |")
    figs = s.get("figures", {})
    lines.append("")
    lines += [f"![{name}]({path})" for name, path in figs.items()]
    return "\n".join(lines) + "\n"


def _strict(obj):
    """NaN/inf → None, so tables.json is strict JSON (``results.jsonl`` keeps NaN for Python readers)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def write_outputs(out: Path, tables: dict) -> None:
    """``tables.md``, ``tables.csv``, ``tables.json`` and ``report.md``."""
    md = markdown_tables(tables)
    atomic_write_text(out / "tables.md", md)
    atomic_write_text(out / "tables.csv", csv_tables(tables))
    atomic_write_text(out / "tables.json", json.dumps(_strict(tables), indent=2, default=str))
    s = tables["settings"]
    model = s["model"]
    base = s["baselines"]
    report = ["# LMAC-ZS evaluation report\n",
              f"Command: `{tables.get('command') or 'lmac-zs evaluate'}`\n",
              f"- model: CLAP `{model['clap']}` ({model['domain']} masking), decoder `{model['decoder']}`"
              + (f", ablation decoder `{model['ablation_decoder']}`" if model.get("ablation_decoder") else ""),
              f"- data: `{s['data']}`, split {s['split']}, {s['targets']} targets, {tables['clips']} clips, "
              f"{tables['prompts']} prompts (\"this is the sound of <class>\")",
              f"- conditions: {', '.join(tables['conditions'])}; contaminated at {s['snr_db']} dB SNR, seed {s['seed']}",
              "- baselines: " + "; ".join(f"{k} {json.dumps({o: v for o, v in d.items() if o != 'key'})}"
                                          for k, d in base.items()),
              f"- deletion/insertion curves: {s['curve_steps']} steps, on "
              f"{', '.join(s['curve_conditions']) or 'no condition'} (– elsewhere)",
              f"- wall time of this invocation's faithfulness part: {tables.get('elapsed_s', 0):.0f} s\n",
              "## Faithfulness (means over clips; AI/AD/AG in %)\n", md]
    timing = ["## Cost (seconds per clip to compute the mask, this machine)\n",
              "| method | " + " | ".join(tables["conditions"]) + " |", "|---|" + "---:|" * len(tables["conditions"])]
    for key in tables["methods"]:
        timing.append(f"| {LABELS.get(key, key)} | " + " | ".join(
            _fmt(tables["conditions"][c]["methods"][key]["mask_s"], 3) for c in tables["conditions"]) + " |")
    report += timing + [""]
    if "localization" in tables:
        report += ["## Ground-truth localisation\n", localization_markdown(tables["localization"])]
    if "sanity" in tables:
        report += ["## Sanity checks\n", sanity_markdown(tables["sanity"])]
    atomic_write_text(out / "report.md", "\n".join(report))


# -- command line ---------------------------------------------------------------------------------------------
def register_cli(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="faithfulness tables (paper Tables 1–2), sanity checks and "
                                               "localisation on ESC-50 split B")
    p.add_argument("--clap", help="CLAP backend spec (default: the embedded esc50-eval model, or the backend "
                                  "the --decoder run was trained on)")
    p.add_argument("--decoder", help="run directory of the LMAC-ZS decoder (default: the embedded one)")
    p.add_argument("--data", default="../shared/data/esc50", help="ESC-50-style folder with meta/splits.csv (default: %(default)s)")
    p.add_argument("--speech", help="LJ Speech folder for the speech condition (default: <data>/../ljspeech)")
    p.add_argument("--methods", default=",".join(ALL_METHODS),
                   help=f"comma-separated methods (default: all = {','.join(ALL_METHODS)})")
    p.add_argument("--conditions", default=",".join(CONDITIONS),
                   help=f"comma-separated conditions (default: {','.join(CONDITIONS)})")
    p.add_argument("--out", default="eval", help="output directory (results.jsonl, tables, report; default: eval)")
    p.add_argument("--limit", type=int, help="evaluate only the first N clips")
    p.add_argument("--split", default="B", help="split to evaluate (default: B)")
    p.add_argument("--targets", default="odd", choices=["all", "even", "odd"],
                   help="class parity to evaluate (default: odd, the classes the esc50-eval decoder never saw)")
    p.add_argument("--seed", type=int, default=0, help="seed of the contaminants and sanity samples")
    p.add_argument("--snr-db", type=float, default=SNR_DB, help=f"SNR of contaminated conditions (default {SNR_DB})")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--curve-steps", type=int, default=EvalConfig.curve_steps,
                   help="deletion/insertion curve steps (0: skip them; default %(default)s)")
    p.add_argument("--curve-conditions", default="clean",
                   help="conditions whose deletion/insertion curves are computed: comma-separated, 'all' or "
                        "'none' (default: clean; each costs 2 × (steps − 1) forwards per clip and method)")
    p.add_argument("--ig-steps", type=int, help=f"IG steps (default {BASELINE_DEFAULTS['ig']['steps']})")
    p.add_argument("--smoothgrad-samples", type=int,
                   help=f"SmoothGrad samples (default {BASELINE_DEFAULTS['smoothgrad']['samples']})")
    p.add_argument("--scorecam-channels", type=int,
                   help=f"ScoreCAM channels (default {BASELINE_DEFAULTS['scorecam']['max_channels']})")
    p.add_argument("--sanity", action="store_true", help="also run the sanity checks (figures + numbers)")
    p.add_argument("--sanity-clips", type=int, default=EvalConfig.sanity_clips)
    p.add_argument("--localization", action="store_true", help="also run the ground-truth localisation test")
    p.add_argument("--ablation-decoder", help="run directory of a second decoder to compare (an ablation, e.g. one "
                   "trained with the paper's L_ZS: --baseline none), reported as 'LMAC-ZS (ablation)'")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evaluate, evaluate_parser=p)


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces ``args`` (options that differ from their defaults)."""
    parser = getattr(args, "evaluate_parser", None)
    defaults = vars(parser.parse_args([])) if parser is not None else {}
    parts = ["lmac-zs", "evaluate"]
    for key, value in vars(args).items():
        if key in ("func", "evaluate_parser", "command") or value == defaults.get(key) or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        parts += [flag] if value is True else [flag, shlex.quote(str(value))]
    return " ".join(parts)


def _curve_conditions(spec: str) -> list[str]:
    spec = spec.strip().lower()
    if spec == "all":
        return list(CONDITIONS)
    if spec in ("none", ""):
        return []
    return check_conditions(spec.split(","))


def cmd_evaluate(args: argparse.Namespace) -> int:
    options: dict[str, dict] = {}
    if args.ig_steps:
        options["ig"] = {"steps": args.ig_steps}
    if args.smoothgrad_samples:
        options["smoothgrad"] = {"samples": args.smoothgrad_samples}
    if args.scorecam_channels:
        options["scorecam"] = {"max_channels": args.scorecam_channels}
    cfg = EvalConfig(clap=args.clap, decoder=args.decoder, data=args.data, speech=args.speech, out=args.out,
                     methods=parse_methods(args.methods), conditions=check_conditions(args.conditions.split(",")),
                     split=args.split, targets=args.targets, limit=args.limit, seed=args.seed, snr_db=args.snr_db,
                     batch_size=args.batch_size, curve_steps=args.curve_steps,
                     curve_conditions=_curve_conditions(args.curve_conditions), baseline_options=options,
                     sanity=args.sanity, sanity_clips=args.sanity_clips, localization=args.localization,
                     ablation_decoder=args.ablation_decoder, device=args.device, threads=args.threads,
                     progress=not args.quiet, command=_command(args))
    tables = run_evaluation(cfg)
    out = Path(cfg.out)
    print(markdown_tables(tables))
    if "localization" in tables:
        print(localization_markdown(tables["localization"]))
    print(f"tables → {out / 'tables.md'}, {out / 'tables.csv'}, {out / 'tables.json'}; report → {out / 'report.md'}")
    return 0
