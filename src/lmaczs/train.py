"""Train an LMAC-ZS decoder on a frozen CLAP with L_ZS: data order, steps, validation, checkpoints, resume.

Determinism: the clip order of epoch e is a permutation drawn from ``seed`` and ``e``; the caption of item k in
epoch e is drawn from ``(seed, e, k)``. A run therefore depends only on its config, and ``resume`` continues at
the exact step where the last checkpoint stopped (decoder, Adam state and RNG restored).

Distributed (``torchrun --nproc_per_node N lmac-zs train ...``): L_ZS is defined over all pairs of a *group* of
``group_size`` clips. The global batch (``batch_size``) is split evenly over the N ranks, each rank averages the
loss over its groups (one group of batch_size/N clips by default) and DDP averages the gradients, so one process
with the same ``batch_size`` and ``group_size`` follows the same trajectory. Every rank draws the same epoch order
and takes its slice of each global batch; rank 0 alone shows progress, logs and writes checkpoints.
"""

from __future__ import annotations

import json
import math
import random
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Sequence

import torch
from tqdm.auto import tqdm

from . import __version__
from . import distributed as dist_utils
from .checkpoint import (CHECKPOINT, atomic_write_text, load_training_state, remove_stale_temps, save_decoder,
                         save_training_state)
from .checks import check_device, check_float, check_int, check_output_dir, read_text_file
from .clap import ClapBackend, load_backend
from .data import CaptionedClip, load_items, load_windows, split_by_group
from .decoder import MaskDecoder, build_decoder
from .errors import CheckpointError, ConfigError, DataError
from .locking import DirLock
from .loss import LossTerms, lzs_loss, out_term
from .mixtures import Example, MixConfig, make_example


@dataclass
class TrainConfig:
    clap: str
    data: str
    out: str
    domain: str = "stft"
    splits: Optional[list[str]] = None
    folds: Optional[list[int]] = None
    targets: str = "all"
    epochs: int = 10
    max_steps: Optional[int] = None
    batch_size: int = 4
    lr: float = 3e-4
    weight_decay: float = 0.0
    lambda1: float = 0.1
    lambda2: float = 1.0
    baseline: str = "silence"  # "silence": L_ZS on the evidence above an empty input (loss.py); "none": the
    # paper's L_ZS as published
    similarity: str = "abs"  # "abs": the paper's |C − kept|; "hinge": only evidence lost counts (loss.py)
    lambda_out: float = 0.0  # weight of the out term (evidence left in the residual (1 − M) ⊙ X; loss.py)
    source_targets: bool = False  # a mixture under one source's caption: target = that source alone (loss.py)
    source_residuals: bool = False  # its out term measured against the other source alone, not silence (loss.py)
    pool: Optional[str] = None  # a training pool of the data protocol (data is then the datasets' root folder)
    mix: Optional[dict] = None  # MixConfig fields: multi-source examples made on the fly (mixtures.py); None: off
    val_fraction: float = 0.15
    seed: int = 0
    checkpoint_every: int = 50
    log_every: int = 10
    grad_clip: float = 1.0
    widths: Optional[list[int]] = None
    frame_prior: bool = False  # the decoder gets a frozen copy of the CLAP's frame head (decoder.py)
    progress: bool = True
    group_size: Optional[int] = None  # clips per L_ZS group; None: the per-process batch (batch_size / ranks)
    device: Optional[str] = None  # None: CPU, or cuda:LOCAL_RANK under torchrun when CUDA is available

    # fields that must match for --resume to continue the same run
    RESUME_KEYS = ("clap", "data", "domain", "splits", "folds", "targets", "batch_size", "lr", "weight_decay",
                   "lambda1", "lambda2", "baseline", "similarity", "lambda_out", "source_targets", "source_residuals",
                   "pool", "mix", "val_fraction", "seed", "widths", "frame_prior")
    # what runs saved before a field existed were trained with
    LEGACY = {"baseline": "none", "similarity": "abs", "lambda_out": 0.0, "source_targets": False,
              "source_residuals": False, "pool": None, "mix": None, "frame_prior": False}


BASELINES = ("silence", "none")


def check_baseline(name: str) -> None:
    if name not in BASELINES:
        raise DataError(f"unknown L_ZS baseline {name!r}; choose one of {', '.join(BASELINES)}")


def check_config(cfg: TrainConfig) -> None:
    """Refuse settings that cannot train, before anything is loaded (one :class:`ConfigError` line each)."""
    check_baseline(cfg.baseline)
    for name, value, low in (("--batch-size", cfg.batch_size, 1), ("--epochs", cfg.epochs, 0),
                             ("--max-steps", cfg.max_steps, 1), ("--checkpoint-every", cfg.checkpoint_every, 1),
                             ("log_every", cfg.log_every, 1), ("--group-size", cfg.group_size, 1)):
        check_int(name, value, minimum=low)
    if cfg.epochs == 0 and cfg.max_steps is None:
        raise ConfigError("--epochs 0 trains for --max-steps steps: pass --max-steps N")
    check_float("--lr", cfg.lr, minimum=0, above=True)
    for name, value in (("weight_decay", cfg.weight_decay), ("--lambda1", cfg.lambda1), ("--lambda2", cfg.lambda2),
                        ("--lambda-out", cfg.lambda_out), ("grad_clip", cfg.grad_clip)):
        check_float(name, value, minimum=0)
    if cfg.source_targets and cfg.mix is None:
        raise ConfigError("--source-targets needs --mix (source targets exist only for the mixtures it makes)")
    if cfg.source_residuals and (cfg.mix is None or cfg.lambda_out == 0):
        raise ConfigError("--source-residuals needs --mix and --lambda-out > 0 (it changes the out term on mixtures)")
    check_float("--val-fraction", cfg.val_fraction, minimum=0, maximum=1, below=True)
    if cfg.widths is not None:
        widths = list(cfg.widths)
        # each decoder level normalises with GroupNorm(min(8, width)): a width above 8 must split into 8 groups
        if len(widths) != 4 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 or (w > 8 and w % 8)
                                   for w in widths):
            raise ConfigError(f"--widths needs 4 channel counts, each 1 to 8 or a multiple of 8 (e.g. 32 64 96 128), "
                              f"got {widths}")
    if cfg.device is not None:
        check_device(cfg.device)
    if not str(cfg.data) or not Path(cfg.data).exists():
        raise DataError(f"training data not found: {cfg.data!r} (a captions CSV or a dataset folder)")
    if Path(cfg.data).is_file():
        read_text_file(cfg.data, "--data file")  # a CSV that is not UTF-8 fails here, in one line
    check_output_dir(cfg.out)


def check_run_dir(out: Path, resume: bool) -> None:
    """Before loading anything: ``--resume`` needs a checkpoint; a new run must not overwrite one."""
    if resume and not (out / CHECKPOINT).is_file():
        raise CheckpointError(f"cannot resume: {out / CHECKPOINT} does not exist")
    if not resume and (out / CHECKPOINT).exists():
        raise CheckpointError(f"{out} already holds a run; pass --resume to continue it or choose another --out")


def truncate_log(path: Path, step: int) -> None:
    """Drop the rows of ``log.jsonl`` past ``step`` (written after the checkpoint a resumed run restarts from, so
    they would appear twice) and any line cut short by a kill."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    keep = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if line.endswith("\n") and isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            keep.append(line)
    if keep != lines:
        atomic_write_text(path, "".join(keep))


@contextmanager
def _run_dir_lock(out: Path, world: dist_utils.World) -> Iterator[None]:
    """Rank 0 holds ``out/.lock`` for the whole run (a second run on ``out`` is refused) and first removes the
    temp files a killed run left behind."""
    if not world.is_main:
        yield
        return
    with DirLock(out, owner="another lmac-zs train run"):
        remove_stale_temps(out)
        yield


def lzs_step(backend: ClapBackend, decoder: MaskDecoder, waves: torch.Tensor, text: torch.Tensor,
             lambda1: float, lambda2: float, group_size: int | None = None, baseline: str = "none",
             lambda_out: float = 0.0, similarity: str = "abs", sources: SourceSelection | None = None,
             source_targets: bool = True, source_residuals: bool = False) -> LossTerms:
    """L_ZS on one batch: ``waves (B, num_samples)``, ``text (B, D)`` unit-norm caption embeddings.

    Builds all B² (text i, audio j) masks in one decoder pass (pair index i·B + j) and one masked pass through
    the frozen audio tower; gradients reach the decoder only. With ``group_size`` g < B, the batch is cut into
    B/g consecutive groups, L_ZS is taken over the g² pairs of each group and averaged over the groups (pair
    index k·g² + i·g + j), still in one decoder pass. ``baseline="silence"`` measures every similarity against
    the text's similarity to the empty input (``lzs_loss``); ``lambda_out > 0`` adds the out term over the
    residuals (1 − M) ⊙ X (one more masked pass), measured against the same silence level. ``sources`` (from
    :func:`select_sources`) sets source targets (``source_targets``): a pair whose caption names one source of a
    mixture alone is compared with that source's contribution, encoded at the mixture's scale; and source residuals
    (``source_residuals``): its out term counts only the evidence above what the other source alone gets.
    """
    check_baseline(baseline)
    b = waves.shape[0]
    g = group_size or b
    if b % g:
        raise DataError(f"a batch of {b} clips cannot be cut into groups of {g}")
    n = b // g
    with torch.no_grad():
        prepared = backend.prepare(waves)
        x, _ = backend.analyze(prepared)
        clean = backend.encode_spec(x)
        need_silence = baseline == "silence" or lambda_out > 0
        silence = backend.encode_spec(torch.zeros_like(x[:1])).embedding[0] if need_silence else None
        reference = other = None
        if sources is not None:
            gain = prepared.abs().amax(-1) / waves.abs().amax(-1).clamp_min(1e-8)  # what prepare scaled each by
            reference, other = source_references(backend, gain, clean.embedding, sources,
                                                 silence if source_residuals else None)
    first = torch.arange(n, device=waves.device).repeat_interleave(g * g) * g  # first clip of each pair's group
    ti = first + torch.arange(g, device=waves.device).repeat_interleave(g).repeat(n)  # text i of the pair
    aj = first + torch.arange(g, device=waves.device).repeat(g * n)  # audio j of the pair
    masks = decoder(text[ti], [h[aj] for h in clean.hidden])
    masked = backend.encode_spec(masks * x[aj]).embedding
    residual = backend.encode_spec((1 - masks) * x[aj]).embedding.view(n, g, g, -1) if lambda_out > 0 else None
    masked = masked.view(n, g, g, masked.shape[-1])
    masks = masks.view(n, g, g, *masks.shape[1:])
    part = [slice(k * g, (k + 1) * g) for k in range(n)]
    groups = []
    for k, p in enumerate(part):
        # b_i = t_iᵀ f_audio(0) for each group's texts (the silence embedding is the same for every clip)
        b_i = None if silence is None else text[p] @ silence
        terms = lzs_loss(text[p], clean.embedding[p], masked[k], masks[k], lambda1, lambda2,
                         b_i if baseline == "silence" else None, similarity,
                         None if reference is None or not source_targets else reference[p, p])
        if residual is not None:
            level = b_i
            if other is not None and source_residuals:  # what the unnamed source alone would leave, if higher
                level = torch.maximum(torch.einsum("id,ijd->ij", text[p], other[p, p]), b_i[:, None])
            terms.out = out_term(text[p], residual[k], level)
            terms.total = terms.total + lambda_out * terms.out
        groups.append(terms)
    if n == 1:
        return groups[0]
    return LossTerms(*(torch.stack([getattr(t, f) for t in groups]).mean() for f in LossTerms.FIELDS[:4]),
                     out=None if residual is None else torch.stack([t.out for t in groups]).mean())


class SourceSelection(NamedTuple):
    parts: torch.Tensor   # (B, 2, N) each example's two source contributions (zeros for a single source)
    select: torch.Tensor  # (B, B) long: s when caption i names source s of example j alone, else −1


def select_sources(made: Sequence[Example], classes: Sequence[str]) -> SourceSelection:
    """Which source of each two-source example each caption of the batch names alone (by class key)."""
    b, n = len(made), made[0].wave.shape[-1]
    parts = torch.zeros(b, 2, n)
    select = torch.full((b, b), -1, dtype=torch.long)
    for j, ex in enumerate(made):
        if ex.parts is None:
            continue
        parts[j] = ex.parts
        for i, other in enumerate(made):
            named = {classes[k] for k in other.named}
            hits = [s for s, k in enumerate(ex.sources) if classes[k] in named]
            if len(hits) == 1:
                select[i, j] = hits[0]
    return SourceSelection(parts, select)


def source_references(backend: ClapBackend, gain: torch.Tensor, clean: torch.Tensor,
                      sources: SourceSelection, silence: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Two ``(B, B, D)`` embeddings per pair (i, j): of the source caption i names alone in example j, else of the
    whole example ``clean (B, D)``; and of the *other* source alone, else ``silence (D,)`` (None without it: the
    other sources are then not encoded). ``gain (B,)``: how ``backend.prepare`` scaled each mixture; its parts
    are scaled alike."""
    b = clean.shape[0]
    reference = clean[None].expand(b, b, -1).clone()
    other = None if silence is None else silence.expand(b, b, -1).clone()
    pairs = (sources.select >= 0).nonzero().tolist()
    if pairs:
        named = {(j, int(sources.select[i, j])) for i, j in pairs}
        needed = sorted(named if other is None else {(j, s) for j, _ in named for s in (0, 1)})
        wave = torch.stack([sources.parts[j, s].to(gain.device) * gain[j] for j, s in needed])
        emb = backend.encode_spec(backend.analyze(wave)[0]).embedding
        row = {key: emb[k] for k, key in enumerate(needed)}
        for i, j in pairs:
            s = int(sources.select[i, j])
            reference[i, j] = row[(j, s)]
            if other is not None:
                other[i, j] = row[(j, 1 - s)]
    return reference, other


def resolve_group_size(cfg: TrainConfig, world_size: int = 1) -> int:
    """Clips per L_ZS group: ``cfg.group_size`` or the per-process batch; both must divide evenly."""
    if cfg.batch_size % world_size:
        raise DataError(f"batch size {cfg.batch_size} (the global batch) must be divisible by the number of "
                        f"processes ({world_size})")
    per_rank = cfg.batch_size // world_size
    g = cfg.group_size or per_rank
    if g < 1 or per_rank % g:
        raise DataError(f"group size {g} must divide the per-process batch of {per_rank} clips "
                        f"(batch size {cfg.batch_size} / {world_size} processes)")
    return g


class TextCache:
    """Unit-norm text embeddings of captions, computed once."""

    def __init__(self, backend: ClapBackend):
        self.backend = backend
        self.table: dict[str, torch.Tensor] = {}

    def add(self, captions: Sequence[str], batch: int = 64) -> None:
        todo = sorted(set(captions) - set(self.table))
        with torch.no_grad():
            for k in range(0, len(todo), batch):
                chunk = todo[k:k + batch]
                for cap, emb in zip(chunk, self.backend.embed_text(chunk)):
                    self.table[cap] = emb

    def __call__(self, captions: Sequence[str]) -> torch.Tensor:
        self.add(captions)
        return torch.stack([self.table[c] for c in captions])


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def pick_caption(item: CaptionedClip, seed: int, epoch: int, index: int) -> str:
    return random.Random(f"{seed}/{epoch}/{index}").choice(item.captions)


def validate(backend: ClapBackend, decoder: MaskDecoder, waves: torch.Tensor, text: torch.Tensor,
             cfg: TrainConfig, group: int | None = None, world: dist_utils.World | None = None
             ) -> dict[str, float]:
    """Mean L_ZS terms over the validation clips in fixed groups (first caption of each clip).

    Groups hold ``group`` clips (default ``cfg.batch_size``); under DDP the ranks share the groups round-robin
    and the sums are reduced over ranks, so every rank returns the single-process value.
    """
    sums: dict[str, float] = {}
    n = 0
    size = group or cfg.batch_size
    world = world or dist_utils.World()
    device = next(decoder.parameters()).device
    decoder.eval()
    with torch.no_grad():
        for k in list(range(0, waves.shape[0], size))[world.rank::world.size]:
            w, t = waves[k:k + size].to(device), text[k:k + size]
            terms = lzs_step(backend, decoder, w, t, cfg.lambda1, cfg.lambda2, baseline=cfg.baseline,
                             lambda_out=cfg.lambda_out, similarity=cfg.similarity).as_floats()
            for key, v in terms.items():
                sums[key] = sums.get(key, 0.0) + v * w.shape[0]
            n += w.shape[0]
    decoder.train()
    if world.distributed:
        # the same keys on every rank (a rank without validation groups has no sums): one all_reduce shape
        keys = LossTerms.FIELDS if cfg.lambda_out > 0 else LossTerms.FIELDS[:4]
        reduced = dist_utils.all_reduce_sum(
            world, torch.tensor([sums.get(k, 0.0) for k in keys] + [float(n)], dtype=torch.float64)).tolist()
        sums, n = dict(zip(keys, reduced[:-1])), int(reduced[-1])
    return {key: v / max(n, 1) for key, v in sums.items()}


def decoder_meta(backend: ClapBackend, cfg: TrainConfig, step: int, extra: dict | None = None) -> dict:
    return {"backend": backend.describe(), "lmaczs_version": __version__, "step": step,
            "train_config": {k: v for k, v in asdict(cfg).items() if k not in ("progress", "device")},
            **(extra or {})}


def train(cfg: TrainConfig, resume: bool = False, backend: ClapBackend | None = None) -> dict:
    """Run (or resume) training. Returns a summary dict (steps, losses, steps/s).

    Under ``torchrun`` every rank calls this with the same config (see the module docstring).
    """
    check_config(cfg)
    check_run_dir(Path(cfg.out), resume)
    world = dist_utils.setup(cfg.device)
    try:
        with _run_dir_lock(Path(cfg.out), world):
            return _train(cfg, resume, backend, world)
    finally:
        dist_utils.teardown(world)


def _train(cfg: TrainConfig, resume: bool, backend: ClapBackend | None, world: dist_utils.World) -> dict:
    out = Path(cfg.out)
    check_run_dir(out, resume)  # again under the lock: another run may have written here since train() checked
    main = world.is_main
    group = resolve_group_size(cfg, world.size)
    torch.manual_seed(cfg.seed)
    backend = (backend or load_backend(cfg.clap, cfg.domain)).to(world.device)
    items = load_items(cfg.data, splits=cfg.splits, folds=cfg.folds, targets=cfg.targets, pool=cfg.pool)
    mix = MixConfig(**cfg.mix) if cfg.mix is not None else None
    train_items, val_items = split_by_group(items, cfg.val_fraction, cfg.seed)
    if len(train_items) < cfg.batch_size:
        raise DataError(f"{len(train_items)} training clips are fewer than one batch of {cfg.batch_size}")
    overrides = {"widths": cfg.widths} if cfg.widths else {}
    decoder = build_decoder(backend, cfg.frame_prior, **overrides).to(world.device)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    if resume:
        meta = load_training_state(out, decoder, optimizer)
        saved = {**TrainConfig.LEGACY, **meta["train_config"]}
        changed = [k for k in TrainConfig.RESUME_KEYS if saved.get(k) != asdict(cfg).get(k)]
        if changed:
            raise CheckpointError(f"cannot resume {out}: these settings differ from the saved run: {changed}")
        saved_group = int(meta.get("group_size", saved["batch_size"]))
        if saved_group != group:
            raise CheckpointError(f"cannot resume {out}: it was trained with L_ZS groups of {saved_group} clips, "
                                  f"this run would use {group} ({world.size} processes); pass --group-size "
                                  f"{saved_group}")
        step = int(meta["step"])
        if main:
            truncate_log(out / "log.jsonl", step)
    # Every rank has read the run directory before rank 0 may write to it.
    dist_utils.barrier(world)
    model: torch.nn.Module = decoder
    if world.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            decoder, device_ids=[world.device.index] if world.device.type == "cuda" else None,
            broadcast_buffers=False)

    progress = cfg.progress and main
    train_waves = load_windows(train_items, backend, progress)
    val_waves = load_windows(val_items, backend, progress) if val_items else None
    texts = TextCache(backend)
    texts.add([c for it in items for c in it.captions])
    classes = [it.class_key or it.group for it in train_items]
    categories = [it.category or it.captions[0] for it in train_items]

    def batch(idx: list[int], epoch: int) -> tuple[torch.Tensor, list[str], SourceSelection | None]:
        """The clips of a step and a caption each, or multi-source examples made from them (``--mix``)."""
        if mix is None:
            return train_waves[idx], [pick_caption(train_items[i], cfg.seed, epoch, i) for i in idx], None
        made = [make_example(i, train_waves, classes, [it.captions for it in train_items], categories, mix,
                             cfg.seed, epoch, backend.sample_rate) for i in idx]
        sources = select_sources(made, classes) if cfg.source_targets or cfg.source_residuals else None
        return torch.stack([m.wave for m in made]), [m.caption for m in made], sources

    val_text = texts([it.captions[0] for it in val_items]) if val_items else None

    steps_per_epoch = len(train_items) // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps) if cfg.epochs else cfg.max_steps
    log_path = out / "log.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    decoder.train()
    extra = {"group_size": group, "world_size": world.size}

    def checkpoint(at: int) -> None:
        if main:
            save_training_state(out, decoder, optimizer, decoder_meta(backend, cfg, at, extra))
            save_decoder(out, decoder, decoder_meta(backend, cfg, at, extra))

    def log(record: dict) -> None:
        history.append(record)
        if main:
            with log_path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")

    def val_loss() -> dict[str, float]:
        return validate(backend, decoder, val_waves, val_text, cfg, group, world)

    if val_waves is not None and step == 0:
        log({"step": 0, "val": val_loss()})
    bar = tqdm(total=total, initial=step, desc="training decoder", disable=not progress, unit="step")
    t0, first = time.perf_counter(), step
    last_terms: dict[str, float] = {}
    mine = dist_utils.rank_slice(cfg.batch_size, world)
    try:
        while step < total:
            epoch, pos = divmod(step, steps_per_epoch)
            order = epoch_order(len(train_items), cfg.seed, epoch)
            idx = order[pos * cfg.batch_size:(pos + 1) * cfg.batch_size][mine]
            waves, caps, sources = batch(idx, epoch)
            terms = lzs_step(backend, model, waves.to(world.device), texts(caps), cfg.lambda1,
                             cfg.lambda2, group, cfg.baseline, cfg.lambda_out, cfg.similarity, sources,
                             cfg.source_targets, cfg.source_residuals)
            optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(decoder.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            last_terms = terms.as_floats()
            if world.distributed:  # report the mean over ranks, i.e. the loss of the global batch
                keys = list(last_terms)
                summed = dist_utils.all_reduce_sum(world, torch.tensor([last_terms[k] for k in keys],
                                                                       dtype=torch.float64))
                last_terms = dict(zip(keys, (summed / world.size).tolist()))
            bar.update(1)
            bar.set_postfix(loss=f"{last_terms['total']:.4f}", mask=f"{last_terms['sparsity']:.2f}")
            if step % cfg.log_every == 0:
                log({"step": step, "train": last_terms})
            end_of_epoch = step % steps_per_epoch == 0
            if val_waves is not None and (end_of_epoch or step == total):
                log({"step": step, "val": val_loss()})
            if step % cfg.checkpoint_every == 0 or step == total:
                checkpoint(step)
                dist_utils.barrier(world)  # the other ranks wait until the checkpoint is on disk
    except KeyboardInterrupt:
        checkpoint(step)  # rank 0 only; no collective here, the other ranks are being interrupted too
        bar.close()
        raise
    bar.close()
    elapsed = time.perf_counter() - t0
    vals = [h["val"] for h in history if "val" in h]
    return {"steps": step, "steps_per_s": (step - first) / elapsed if elapsed > 0 else math.nan,
            "train": last_terms, "val_first": vals[0] if vals else None, "val_last": vals[-1] if vals else None,
            "out": str(out)}
