"""Train an LMAC-ZS decoder on a frozen CLAP with L_ZS: data order, steps, validation, checkpoints, resume.

Determinism: the clip order of epoch e is a permutation drawn from ``seed`` and ``e``; the caption of item k in
epoch e is drawn from ``(seed, e, k)``. A run therefore depends only on its config, and ``resume`` continues at
the exact step where the last checkpoint stopped (decoder, Adam state and RNG restored).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch
from tqdm.auto import tqdm

from . import __version__
from .audio import peak_normalize
from .checkpoint import CHECKPOINT, load_training_state, save_decoder, save_training_state
from .clap import ClapBackend, load_backend
from .data import CaptionedClip, load_items, load_windows, split_by_group
from .decoder import MaskDecoder, build_decoder
from .errors import CheckpointError, DataError
from .loss import LossTerms, lzs_loss


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
    val_fraction: float = 0.15
    seed: int = 0
    checkpoint_every: int = 50
    log_every: int = 10
    grad_clip: float = 1.0
    widths: Optional[list[int]] = None
    progress: bool = True

    # fields that must match for --resume to continue the same run
    RESUME_KEYS = ("clap", "data", "domain", "splits", "folds", "targets", "batch_size", "lr", "weight_decay",
                   "lambda1", "lambda2", "val_fraction", "seed", "widths")


def prepare(backend: ClapBackend, waves: torch.Tensor) -> torch.Tensor:
    """Per-backend wave normalisation before analysis. ``(B, N) -> (B, N)``."""
    return peak_normalize(waves)[0] if backend.peak_normalize else waves


def lzs_step(backend: ClapBackend, decoder: MaskDecoder, waves: torch.Tensor, text: torch.Tensor,
             lambda1: float, lambda2: float) -> LossTerms:
    """L_ZS on one batch: ``waves (B, num_samples)``, ``text (B, D)`` unit-norm caption embeddings.

    Builds all B² (text i, audio j) masks in one decoder pass (pair index i·B + j) and one masked pass through
    the frozen audio tower; gradients reach the decoder only.
    """
    b = waves.shape[0]
    with torch.no_grad():
        x, _ = backend.analyze(prepare(backend, waves))
        clean = backend.encode_spec(x)
    masks = decoder(text.repeat_interleave(b, 0), [h.repeat(b, 1, 1, 1) for h in clean.hidden])
    masked = backend.encode_spec(masks * x.repeat(b, 1, 1)).embedding
    d = masked.shape[-1]
    return lzs_loss(text, clean.embedding, masked.view(b, b, d), masks.view(b, b, *masks.shape[1:]),
                    lambda1, lambda2)


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
             cfg: TrainConfig) -> dict[str, float]:
    """Mean L_ZS terms over the validation clips in fixed batches (first caption of each clip)."""
    sums: dict[str, float] = {}
    n = 0
    decoder.eval()
    with torch.no_grad():
        for k in range(0, waves.shape[0], cfg.batch_size):
            w, t = waves[k:k + cfg.batch_size], text[k:k + cfg.batch_size]
            terms = lzs_step(backend, decoder, w, t, cfg.lambda1, cfg.lambda2).as_floats()
            for key, v in terms.items():
                sums[key] = sums.get(key, 0.0) + v * w.shape[0]
            n += w.shape[0]
    decoder.train()
    return {key: v / max(n, 1) for key, v in sums.items()}


def decoder_meta(backend: ClapBackend, cfg: TrainConfig, step: int, extra: dict | None = None) -> dict:
    return {"backend": backend.describe(), "lmaczs_version": __version__, "step": step,
            "train_config": {k: v for k, v in asdict(cfg).items() if k != "progress"}, **(extra or {})}


def train(cfg: TrainConfig, resume: bool = False, backend: ClapBackend | None = None) -> dict:
    """Run (or resume) training. Returns a summary dict (steps, losses, steps/s)."""
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    backend = backend or load_backend(cfg.clap, cfg.domain)
    items = load_items(cfg.data, splits=cfg.splits, folds=cfg.folds, targets=cfg.targets)
    train_items, val_items = split_by_group(items, cfg.val_fraction, cfg.seed)
    if len(train_items) < cfg.batch_size:
        raise DataError(f"{len(train_items)} training clips are fewer than one batch of {cfg.batch_size}")
    overrides = {"widths": cfg.widths} if cfg.widths else {}
    decoder = build_decoder(backend, **overrides)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    if resume:
        meta = load_training_state(out, decoder, optimizer)
        saved = meta["train_config"]
        changed = [k for k in TrainConfig.RESUME_KEYS if saved.get(k) != asdict(cfg).get(k)]
        if changed:
            raise CheckpointError(f"cannot resume {out}: these settings differ from the saved run: {changed}")
        step = int(meta["step"])
    elif (out / CHECKPOINT).exists():
        raise CheckpointError(f"{out} already holds a run; pass --resume to continue it or choose another --out")

    train_waves = load_windows(train_items, backend, cfg.progress)
    val_waves = load_windows(val_items, backend, cfg.progress) if val_items else None
    texts = TextCache(backend)
    texts.add([c for it in items for c in it.captions])
    val_text = texts([it.captions[0] for it in val_items]) if val_items else None

    steps_per_epoch = len(train_items) // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps) if cfg.epochs else cfg.max_steps
    log_path = out / "log.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    decoder.train()

    def checkpoint(at: int) -> None:
        save_training_state(out, decoder, optimizer, decoder_meta(backend, cfg, at))
        save_decoder(out, decoder, decoder_meta(backend, cfg, at))

    def log(record: dict) -> None:
        history.append(record)
        with log_path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    if val_waves is not None and step == 0:
        log({"step": 0, "val": validate(backend, decoder, val_waves, val_text, cfg)})
    bar = tqdm(total=total, initial=step, desc="training decoder", disable=not cfg.progress, unit="step")
    t0, first = time.perf_counter(), step
    last_terms: dict[str, float] = {}
    try:
        while step < total:
            epoch, pos = divmod(step, steps_per_epoch)
            order = epoch_order(len(train_items), cfg.seed, epoch)
            idx = order[pos * cfg.batch_size:(pos + 1) * cfg.batch_size]
            caps = [pick_caption(train_items[i], cfg.seed, epoch, i) for i in idx]
            terms = lzs_step(backend, decoder, train_waves[idx], texts(caps), cfg.lambda1, cfg.lambda2)
            optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(decoder.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            last_terms = terms.as_floats()
            bar.update(1)
            bar.set_postfix(loss=f"{last_terms['total']:.4f}", mask=f"{last_terms['sparsity']:.2f}")
            if step % cfg.log_every == 0:
                log({"step": step, "train": last_terms})
            end_of_epoch = step % steps_per_epoch == 0
            if val_waves is not None and (end_of_epoch or step == total):
                log({"step": step, "val": validate(backend, decoder, val_waves, val_text, cfg)})
            if step % cfg.checkpoint_every == 0 or step == total:
                checkpoint(step)
    except KeyboardInterrupt:
        checkpoint(step)
        bar.close()
        raise
    bar.close()
    elapsed = time.perf_counter() - t0
    vals = [h["val"] for h in history if "val" in h]
    return {"steps": step, "steps_per_s": (step - first) / elapsed if elapsed > 0 else math.nan,
            "train": last_terms, "val_first": vals[0] if vals else None, "val_last": vals[-1] if vals else None,
            "out": str(out)}
