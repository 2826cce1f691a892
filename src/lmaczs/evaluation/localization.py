"""Ground-truth localisation: does an explanation of class A point at the part of the audio that is A?

A test item splices two clips of different classes into one backend window at equal loudness: the loudest
half-window of clip A and the loudest half-window of clip B, each scaled to unit RMS, side by side (A first for
every other clip of the pool, ordered by name, so position cannot score), then peak-normalised. Every method
explains A's class prompt (even when the model predicts something else). A is an evaluated clip; its partner B
comes from one of several *pairings*: the same dataset's held-out pool (another class), the other dataset's
held-out set (ESC-50 split B / UrbanSound8K folds 7–8; another sound: UrbanSound8K's dog_bark is ESC-50's dog), or
the held-out speech (LJ001-0101 … 0150). Per explanation:

- **energy share**: ``Σ_{A's frames} M² / Σ M²`` — chance is A's share of the frames (≈ 0.5);
- **pointing game**: 1 if the largest mask value inside A's frames exceeds the largest outside, 0.5 on a tie
  (saturated masks tie), else 0.

A frame belongs to A's region when its centre (``t · hop`` samples, centred STFT) lies in A's span.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Sequence

import torch

from ..audio import loudest_segment
from ..datasets import Clip, held_out
from ..errors import DataError
from .conditions import check_choices, seed_of, speech_files
from .logs import LOCALIZATION, ResultLog

if TYPE_CHECKING:
    from .context import EvalContext
    from .data import EvalData

PAIRINGS: tuple[str, ...] = ("esc50", "urbansound8k", "speech")
PAIRING_LABELS = {"esc50": "ESC-50", "urbansound8k": "UrbanSound8K", "speech": "speech"}

class Spliced(NamedTuple):
    wave: torch.Tensor  # (num_samples,)
    span: tuple[int, int]  # A's samples [start, end)


def splice(a: torch.Tensor, b: torch.Tensor, num_samples: int, a_first: bool, hop: int = 1) -> Spliced:
    """Loudest half-window of ``a`` and of ``b`` at equal RMS, side by side, peak-normalised."""
    half = num_samples // 2
    seg_a = loudest_segment(a, half if a_first else num_samples - half, hop)
    seg_b = loudest_segment(b, num_samples - half if a_first else half, hop)
    seg_a = seg_a / seg_a.pow(2).mean().sqrt().clamp_min(1e-8)
    seg_b = seg_b / seg_b.pow(2).mean().sqrt().clamp_min(1e-8)
    wave = torch.cat([seg_a, seg_b] if a_first else [seg_b, seg_a])
    wave = wave / wave.abs().max().clamp_min(1e-8)
    return Spliced(wave, (0, half) if a_first else (half, num_samples))


def region_frames(span: tuple[int, int], n_frames: int, hop: int) -> torch.Tensor:
    """``(T,)`` bool: frames whose centre ``t·hop`` lies in ``[start, end)``."""
    centres = torch.arange(n_frames) * hop
    return (centres >= span[0]) & (centres < span[1])


def energy_share(masks: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """``Σ_region M² / Σ M²`` per mask. ``masks (B, T, F)``, ``region (B, T)`` bool → ``(B,)`` (NaN if M = 0)."""
    e = masks.double().pow(2).sum(dim=2)  # (B, T)
    total = e.sum(dim=1)
    inside = (e * region.to(e.device)).sum(dim=1)
    return torch.where(total > 0, inside / total.clamp_min(1e-300), torch.full_like(total, float("nan"))).float()


def pointing_game(masks: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """1 / 0.5 / 0 as the mask's maximum lies inside / on both sides of / outside the region. ``(B,)``."""
    per_frame = masks.amax(dim=2)  # (B, T)
    region = region.to(per_frame.device)
    neg = torch.full_like(per_frame, -float("inf"))
    inside = torch.where(region, per_frame, neg).amax(dim=1)
    outside = torch.where(region, neg, per_frame).amax(dim=1)
    return torch.where(inside > outside, 1.0, torch.where(inside == outside, 0.5, 0.0)).float()


def localization_pairs(clips: Sequence[Clip], pool: Sequence[Clip], seed: int = 0
                       ) -> list[tuple[Clip, Clip, bool]]:
    """``(A, B, a_first)`` per clip A: B a pool clip of another class (deterministic), A first on even i.
    (The single-pairing form of the earlier tables; :func:`pairing_items` is what the evaluation uses.)"""
    pool = sorted(pool, key=lambda c: c.filename)
    out = []
    for i, a in enumerate(clips):
        others = [c for c in pool if c.target != a.target]
        b = random.Random(seed_of(seed, "localization", a.filename)).choice(others)
        out.append((a, b, i % 2 == 0))
    return out


def check_pairings(names: Sequence[str]) -> list[str]:
    return check_choices(names, PAIRINGS, "localisation pairing")


def partner_pools(data: "EvalData", pairings: Sequence[str], speech_dir: str | Path | None) -> dict[str, list[Clip]]:
    """The partner pool of each pairing (held-out clips only), checked before any model work."""
    pools: dict[str, list[Clip]] = {}
    for name in check_pairings(pairings):
        if name == data.dataset:
            pools[name] = list(data.pool)
        elif name == "speech":
            if speech_dir is None:
                raise DataError("the speech localisation pairing needs an LJ Speech folder (pass --speech DIR)")
            pools[name] = [Clip(p, "ljspeech", p.stem, "speech", 0, p.stem) for p in speech_files(speech_dir)]
        else:
            try:
                pools[name] = held_out(name, data.root)
            except DataError as exc:
                raise DataError(f"localisation pairing {name}: {exc} (choose pairings with --pairings)") from None
        if not pools[name]:
            raise DataError(f"localisation pairing {name}: no held-out clips")
    return pools


def pairing_items(data: "EvalData", pairing: str, pool: Sequence[Clip], seed: int = 0
                  ) -> list[tuple[Clip, Clip, bool]]:
    """``(A, B, a_first)`` per evaluated clip A of one pairing: B drawn (seeded by A's name) from the pool's clips
    of another sound; A first when its rank in the evaluation pool is even (independent of the clip selection,
    so a resumed or extended run sees the same items)."""
    pool = sorted(pool, key=lambda c: c.filename)
    out = []
    for a in data.clips:
        others = [c for c in pool if c.class_key != a.class_key and c.key != a.key]
        if not others:
            raise DataError(f"localisation pairing {pairing}: no partner of another class for {a.filename}")
        tag = seed_of(seed, "localization", a.filename) if pairing == a.dataset else \
            seed_of(seed, "localization", pairing, a.key)
        out.append((a, random.Random(tag).choice(others), data.ranks[a.key] % 2 == 0))
    return out


def run_localization(ctx: "EvalContext", pools: dict[str, list[Clip]]) -> dict:
    """Every method on the spliced items of each pairing (rows → ``localization.jsonl``, resumable).
    Returns ``{"pairings": {name: {"items", "a_predicted", "region_fraction", "partners"}}}``; the tables are
    built from the log (:mod:`.tables`)."""
    backend, data = ctx.backend, ctx.data
    log = ResultLog(ctx.out / LOCALIZATION, ("pairing", "method", "clip"))
    hop = backend.front.stft.hop_length
    items = {name: pairing_items(data, name, pool, ctx.seed) for name, pool in pools.items()}
    todo = sum(not log.has(p, m, a.filename) for p, its in items.items() for m in ctx.keys for a, _, _ in its)
    bar = ctx.progress_bar(todo, "localisation")
    for pairing, its in items.items():
        for s in range(0, len(its), ctx.batch_size):
            batch = its[s:s + ctx.batch_size]
            pending = {m: [i for i, (a, _, _) in enumerate(batch) if not log.has(pairing, m, a.filename)]
                       for m in ctx.keys}
            if not any(pending.values()):
                continue
            spliced = [splice(ctx.cond.window(a.path), ctx.cond.window(b.path), backend.num_samples, first, hop)
                       for a, b, first in batch]
            views = ctx.analyze(torch.stack([sp.wave for sp in spliced]))
            main = views[ctx.primary]
            pred = (main.enc.embedding @ ctx.text.T.to(main.enc.embedding)).argmax(dim=1)
            n_frames = main.x.shape[1]
            region = torch.stack([region_frames(sp.span, n_frames, hop) for sp in spliced]).to(main.x.device)
            targets = torch.tensor([data.index[a.target] for a, _, _ in batch], device=main.x.device)
            for key in ctx.keys:
                idx = pending[key]
                if not idx:
                    continue
                sel = torch.tensor(idx, device=main.x.device)
                masks = ctx.explain(key, views, idx, targets[sel])
                share = energy_share(masks, region[sel])
                point = pointing_game(masks, region[sel])
                mm = masks.flatten(1).mean(1)
                rows = []
                for j, i in enumerate(idx):
                    a, b, first = batch[i]
                    rows.append({"pairing": pairing, "method": key, "clip": a.filename, "partner": b.key,
                                 "partner_class": b.category, "a_first": first, "target": data.index[a.target],
                                 "pred": int(pred[i]), "region_fraction": float(region[i].double().mean()),
                                 "energy_share": _f(share[j]), "pointing": _f(point[j]), "MM": _f(mm[j])})
                log.append(rows)
                bar.update(len(rows))
    bar.close()
    return {"items": {p: len(its) for p, its in items.items()}}


def _f(v: torch.Tensor | float) -> float:
    v = float(v)
    return v if v == v and abs(v) != float("inf") else float("nan")
