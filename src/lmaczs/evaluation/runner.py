"""One evaluation run, end to end: check the inputs, load the models, run each part, write the tables.

Parts (each resumable through its JSON-lines log, see :mod:`.logs`):

1. faithfulness under the four conditions (:mod:`.faithfulness`) — always;
2. localisation on spliced items, one table per pairing (:mod:`.localization`) — ``localization=True``;
3. separation of overlapped pairs, with the ideal ratio mask as ceiling (:mod:`.separation`) — ``separation=True``;
4. sanity checks (:mod:`.sanity`) — ``sanity=True``.

The tables (with bootstrap intervals and paired tests, :mod:`.tables`) are rewritten after each part, so a long run
has its faithfulness tables on disk before the optional parts start.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ..checkpoint import atomic_write_text, load_decoder
from ..clap import EMBEDDED, ClapBackend
from ..errors import CheckpointError, DataError, LmacError
from .conditions import CONDITIONS, SNR_DB, Conditions, check_conditions, speech_files
from .context import EvalContext
from .data import EvalData, held_out_note, select_eval_data
from .faithfulness import run_faithfulness
from .localization import PAIRINGS, check_pairings, partner_pools, run_localization
from .logs import CONFIG, LOCALIZATION, RESULTS, SEPARATION, ResultLog, check_out_dir
from .methods import (ABLATION, ALL_METHODS, DEFAULT_PRESET, LMACZS, MEL, baseline_settings, build_methods,
                      check_preset, in_domain, parse_methods)
from .report import write_outputs
from .separation import SEPARATION_SNR_DB, run_separation
from .stats import RESAMPLES, StatsConfig
from .tables import build_tables, localization_tables, sanity_intervals, separation_table

PROTOCOL = "v3"  # results files of earlier versions (other keys, other pools) are not extended


@dataclass
class EvalConfig:
    clap: Optional[str] = None  # None: the embedded esc50-eval model (or the decoder run's backend)
    decoder: Optional[str] = None
    data: str = "../shared/data/esc50"  # an ESC-50 or UrbanSound8K folder
    speech: Optional[str] = None  # None: <data>/../ljspeech
    out: str = "eval"
    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    conditions: list[str] = field(default_factory=lambda: list(CONDITIONS))
    split: Optional[str] = None  # ESC-50 (default B)
    targets: Optional[str] = None  # ESC-50 class parity (default all)
    folds: Optional[list[int]] = None  # UrbanSound8K (default 7 8); ESC-50: a filter within the split
    limit: Optional[int] = None  # the first N clips (after max_clips)
    max_clips: Optional[int] = None  # a seeded subset of N clips (nested in N)
    seed: int = 0
    snr_db: float = SNR_DB
    batch_size: int = 8
    curve_steps: int = 4  # deletion/insertion curve steps (0: skip the curves)
    curve_conditions: list[str] = field(default_factory=lambda: ["clean"])  # where the curves are computed
    baseline_settings: str = DEFAULT_PRESET  # "standard" | "reduced"
    baseline_options: dict = field(default_factory=dict)  # {method: {option: value}} over the preset
    sanity: bool = False
    sanity_clips: int = 16
    sanity_prompts: int = 8
    localization: bool = False
    pairings: list[str] = field(default_factory=lambda: list(PAIRINGS))
    separation: bool = False
    ablation_decoder: Optional[str] = None
    mel_decoder: Optional[str] = None
    bootstrap: int = RESAMPLES
    test: str = "signflip"
    device: str = "cpu"
    threads: Optional[int] = None
    progress: bool = True
    command: str = ""

    # settings that change per-example results: an existing results file must have been written with these
    RESULT_KEYS = ("model", "protocol", "dataset", "data", "pool", "seed", "snr_db", "curve_steps",
                   "curve_conditions", "baselines")


# -- loading ------------------------------------------------------------------------------------------------
def _digest(module: torch.nn.Module) -> str:
    h = hashlib.sha1()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _extra_decoder(ex, path: str, flag: str, domain: str | None):
    """A second decoder for the same backend (``domain``: the one it must mask in; None: the backend's)."""
    from ..explain import Explainer

    dec, meta = load_decoder(Path(path))
    trained = meta.get("backend", {})
    if domain is not None and trained.get("domain", "stft") != domain:
        raise CheckpointError(f"{flag} {path}: that decoder masks in the {trained.get('domain', 'stft')} domain, "
                              f"not {domain} (train it with --domain {domain})")
    if trained.get("spec") and trained["spec"] != ex.clap.spec:
        raise CheckpointError(f"{flag} {path} was trained on CLAP {trained['spec']!r}, not {ex.clap.spec!r}")
    with in_domain(ex.clap, domain or ex.clap.domain_name):
        return Explainer(ex.clap, dec, device=ex.device).decoder  # checks the shapes match the backend


def load_models(cfg: EvalConfig) -> tuple[ClapBackend, object, object, dict, object]:
    """``(backend, decoder, ablation decoder or None, identity, mel decoder or None)`` (backend in eval mode)."""
    from ..explain import Explainer

    if cfg.decoder:
        ex = Explainer.load(cfg.clap, cfg.decoder, device=cfg.device)
        source = str(Path(cfg.decoder))
    else:
        name = cfg.clap or "esc50-eval"
        if name not in EMBEDDED:
            raise LmacError(f"backend {name!r} needs a trained decoder: pass --decoder RUN_DIR")
        ex = Explainer.from_pretrained(name, device=cfg.device)
        source = f"embedded:{name}"
    ablation = _extra_decoder(ex, cfg.ablation_decoder, "--ablation-decoder", None) if cfg.ablation_decoder else None
    mel = _extra_decoder(ex, cfg.mel_decoder, "--mel-decoder", "mel") if cfg.mel_decoder else None
    ident = {"clap": ex.clap.spec, "domain": ex.clap.domain_name, "backend_digest": _digest(ex.clap),
             "decoder": source, "decoder_digest": _digest(ex.decoder),
             "ablation_decoder": cfg.ablation_decoder, "ablation_digest": _digest(ablation) if ablation else None,
             "mel_decoder": cfg.mel_decoder, "mel_digest": _digest(mel) if mel else None}
    return ex.clap, ex.decoder, ablation, ident, mel


def speech_dir(cfg: EvalConfig) -> Path:
    """The speech folder: ``--speech`` or ``ljspeech/`` beside the dataset folder."""
    return Path(cfg.speech) if cfg.speech else Path(cfg.data).resolve().parent / "ljspeech"


def _method_keys(cfg: EvalConfig) -> list[str]:
    keys = parse_methods(cfg.methods)
    after = keys.index(LMACZS) + 1 if LMACZS in keys else 0
    for flag, key in ((cfg.mel_decoder, MEL), (cfg.ablation_decoder, ABLATION)):
        if flag and key not in keys:
            keys.insert(after, key)
    for flag, key, option in ((cfg.ablation_decoder, ABLATION, "--ablation-decoder"),
                              (cfg.mel_decoder, MEL, "--mel-decoder")):
        if key in keys and not flag:
            raise LmacError(f"method {key} needs {option} RUN_DIR")
    return keys


def _jsonable(cfg: EvalConfig) -> dict:
    return {k: v for k, v in asdict(cfg).items() if k not in ("progress",)}


def _pool_settings(data: EvalData) -> dict:
    sel = data.selection
    return {"dataset": data.dataset, "split": sel.get("split"), "folds": sel.get("folds"),
            "clips": len(data.pool)}


# -- the run ----------------------------------------------------------------------------------------------------
def run_evaluation(cfg: EvalConfig) -> dict:
    """Run (or resume) an evaluation; write the logs, the tables and ``report.md`` into ``cfg.out``.
    Returns the tables (as written to ``tables.json``)."""
    # cheap checks first: nothing is loaded or written before the inputs are known to be usable
    conditions = check_conditions(cfg.conditions)
    curve_conditions = check_conditions(cfg.curve_conditions) if cfg.curve_conditions else []
    keys = _method_keys(cfg)
    check_preset(cfg.baseline_settings)
    pairings = check_pairings(cfg.pairings) if cfg.localization else []
    stats = StatsConfig(resamples=cfg.bootstrap, seed=cfg.seed, test=cfg.test)
    if cfg.batch_size < 1:
        raise LmacError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    data = select_eval_data(cfg.data, split=cfg.split, folds=cfg.folds, targets=cfg.targets, limit=cfg.limit,
                            max_clips=cfg.max_clips, seed=cfg.seed)
    speech = speech_dir(cfg)
    if "speech" in conditions or "speech" in pairings:
        speech_files(speech)  # the folder exists and holds the held-out utterances
    pools = partner_pools(data, pairings, speech) if pairings else {}
    if cfg.separation and len({c.class_key for c in data.pool}) < 2:
        raise DataError("the separation benchmark needs held-out clips of at least two classes")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise LmacError(f"--out {out} is a file, not a folder")

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    backend, decoder, ablation, ident, mel = load_models(cfg)
    sources = {LMACZS: ident["decoder"], ABLATION: cfg.ablation_decoder or "", MEL: cfg.mel_decoder or ""}
    methods = build_methods(keys, decoder, ablation, cfg.baseline_options, sources, preset=cfg.baseline_settings,
                            mel=mel)
    settings = {"model": ident, "protocol": PROTOCOL, "dataset": data.dataset,
                "data": str(Path(cfg.data).resolve()), "pool": _pool_settings(data), "seed": cfg.seed,
                "snr_db": cfg.snr_db, "curve_steps": cfg.curve_steps,
                "curve_conditions": sorted(curve_conditions) if cfg.curve_steps > 0 else [],
                "baseline_settings": cfg.baseline_settings,
                "baselines": baseline_settings(cfg.baseline_settings, cfg.baseline_options)}
    out.mkdir(parents=True, exist_ok=True)
    check_out_dir(out, settings, EvalConfig.RESULT_KEYS)
    atomic_write_text(out / CONFIG, json.dumps({"result_settings": settings, "config": _jsonable(cfg)}, indent=2))

    device = torch.device(cfg.device)
    cond = Conditions(backend, data.pool, cfg.seed,
                      speech if ("speech" in conditions or "speech" in pairings) else None, cfg.snr_db)
    with torch.no_grad():
        text = backend.embed_text(data.prompts).to(device)
    ctx = EvalContext(backend, methods, data, cond, text, out, seed=cfg.seed, batch_size=cfg.batch_size,
                      device=device, progress=cfg.progress, stats=stats)
    clip_names = [c.filename for c in data.clips]
    sel = data.selection
    info = {"dataset": data.dataset, "label": data.label, "held_out": held_out_note(data), "split": sel.get("split"),
            "folds": sel.get("folds"), "targets": sel.get("targets"), "limit": sel.get("limit"),
            "max_clips": sel.get("max_clips"), "pool_clips": len(data.pool)}

    elapsed = run_faithfulness(ctx, conditions, cfg.curve_steps, curve_conditions if cfg.curve_steps > 0 else [])
    rows = ResultLog(out / RESULTS, ("condition", "method", "clip")).rows
    tables = build_tables(rows, conditions, keys, clip_names, len(data.prompts), stats)
    tables.update(elapsed_s=elapsed, settings=settings, command=cfg.command, data=info)
    write_outputs(out, tables)  # the faithfulness tables are on disk before the optional parts run

    if pairings:
        run_localization(ctx, pools)
        loc_rows = ResultLog(out / LOCALIZATION, ("pairing", "method", "clip")).rows
        tables["localization"] = localization_tables(loc_rows, pairings, keys, clip_names, stats)
        write_outputs(out, tables)
    if cfg.separation:
        info_sep = run_separation(ctx, SEPARATION_SNR_DB)
        sep_rows = ResultLog(out / SEPARATION, ("method", "clip")).rows
        tables["separation"] = separation_table(sep_rows, keys, clip_names, stats, info_sep["snr_db"])
        write_outputs(out, tables)
    if cfg.sanity:
        tables["sanity"] = run_sanity_checks(cfg, ctx, decoder, ablation)
        tables["sanity"]["intervals"] = sanity_intervals(tables["sanity"], stats)
        write_outputs(out, tables)
    return tables


def run_sanity_checks(cfg: EvalConfig, ctx: EvalContext, decoder, ablation) -> dict:
    """The checks of :mod:`.sanity` on a seeded sample of the clean clips (LMAC-ZS, the ablation if given,
    GradCAM++; in the backend's own domain)."""
    from .sanity import SANITY_METHODS, run_sanity

    keys = [k for k in SANITY_METHODS if k != ABLATION or ablation is not None]
    methods = build_methods(keys, decoder, ablation, cfg.baseline_options, preset=cfg.baseline_settings)
    clips = ctx.data.clips
    chosen = sorted(random.Random(cfg.seed).sample(range(len(clips)), min(cfg.sanity_clips, len(clips))))
    sample = [clips[i] for i in chosen]
    waves = torch.stack([ctx.cond.window(c.path) for c in sample]).to(ctx.device)
    with torch.no_grad():
        x, _ = ctx.backend.analyze(ctx.backend.prepare(waves))
    labels = torch.tensor([ctx.data.index[c.target] for c in sample])
    return run_sanity(ctx.backend, methods, x, labels, ctx.text, ctx.data.prompts, ctx.out, seed=cfg.seed,
                      prompts_per_clip=cfg.sanity_prompts, batch=cfg.batch_size,
                      names=[c.filename for c in sample], progress=cfg.progress)
