"""Ground-truth localisation: does an explanation of class A point at the part of the audio that is A?

A test item splices two clips of different classes into one backend window at equal loudness: the loudest
half-window of clip A and the loudest half-window of clip B, each scaled to unit RMS, side by side (A first for
even pair indices, second for odd ones, so position cannot score), then peak-normalised. Every method explains
A's class prompt (even when the model predicts something else). Per explanation:

- **energy share**: ``Σ_{A's frames} M² / Σ M²`` — chance is A's share of the frames (≈ 0.5);
- **pointing game**: 1 if the largest mask value inside A's frames exceeds the largest outside, 0.5 on a tie
  (saturated masks tie), else 0.

A frame belongs to A's region when its centre (``t · hop`` samples, centred STFT) lies in A's span.
"""

from __future__ import annotations

import random
from typing import NamedTuple, Sequence

import torch

from .conditions import seed_of
from .esc50 import Esc50Clip


class Spliced(NamedTuple):
    wave: torch.Tensor  # (num_samples,)
    span: tuple[int, int]  # A's samples [start, end)


def loudest_segment(wave: torch.Tensor, length: int, hop: int) -> torch.Tensor:
    """The ``length`` samples of ``wave (N,)`` with the most energy, starting at a multiple of ``hop``."""
    if wave.shape[-1] <= length:
        return torch.nn.functional.pad(wave, (0, length - wave.shape[-1]))
    energy = torch.nn.functional.pad(wave.double().pow(2).cumsum(0), (1, 0))
    starts = torch.arange(0, wave.shape[-1] - length + 1, max(1, hop))
    best = int(starts[(energy[starts + length] - energy[starts]).argmax()])
    return wave[best:best + length]


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


def localization_pairs(clips: Sequence[Esc50Clip], pool: Sequence[Esc50Clip], seed: int = 0
                       ) -> list[tuple[Esc50Clip, Esc50Clip, bool]]:
    """``(A, B, a_first)`` per clip A: B a pool clip of another class (deterministic), A first on even i."""
    pool = sorted(pool, key=lambda c: c.filename)
    out = []
    for i, a in enumerate(clips):
        others = [c for c in pool if c.target != a.target]
        b = random.Random(seed_of(seed, "localization", a.filename)).choice(others)
        out.append((a, b, i % 2 == 0))
    return out
