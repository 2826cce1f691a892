"""Multi-source training examples for the decoder, made on the fly and reproducibly from single-source clips.

Single-source clips teach a decoder nothing about leaving a sound out: "keep the loud part" fits every prompt.
Each example here is one of

- **single**: one clip as it is;
- **overlap**: two clips of different classes summed at loudness-matched RMS, the second ``±level_db`` dB;
- **splice**: the loudest part of each clip in two disjoint time spans (cut point drawn in the middle 40 %),
  joined with a short linear crossfade;
- **silence**: an empty window (every prompt's evidence is at silence level: the mask should be empty),

and carries a caption of one of its sources or one naming every source ("a dog barks while rain falls"). Since
L_ZS compares every (text i, audio j) pair of a batch, a mixture paired with the caption of one of its sources is
exactly where the mask must drop the other. A mixture also keeps each source's contribution (``parts``, which sum
to the wave) and the items its caption names (``named``), for source targets (``train.source_references``).
Everything is drawn from ``(seed, epoch, index)``: a run stays reproducible and resumable.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import NamedTuple, Sequence

import torch

from .datasets.captions import mixture_caption
from .errors import DataError
from .audio import loudest_segment


@dataclass(frozen=True)
class MixConfig:
    """How often each kind of example occurs, and how sources are combined. All probabilities in [0, 1]."""

    p_overlap: float = 0.35
    p_splice: float = 0.35
    p_silence: float = 0.05          # the rest are single sources
    level_db: float = 6.0            # the second source at a uniform −level_db … +level_db dB relative level
    crossfade_s: float = 0.05
    p_mixture_caption: float = 0.2   # a mixture's caption names every source; else one source's caption

    def __post_init__(self) -> None:
        probs = (self.p_overlap, self.p_splice, self.p_silence, self.p_mixture_caption)
        if any(not 0 <= p <= 1 for p in probs) or self.p_overlap + self.p_splice + self.p_silence > 1:
            raise DataError("mixture probabilities must lie in [0, 1] and p_overlap + p_splice + p_silence ≤ 1")
        if self.level_db < 0 or self.crossfade_s < 0:
            raise DataError("mixture level_db and crossfade_s must be ≥ 0")

    def to_dict(self) -> dict:
        return asdict(self)


class Example(NamedTuple):
    wave: torch.Tensor       # (num_samples,)
    caption: str
    kind: str                # single | overlap | splice | silence
    sources: tuple[int, ...]  # item indices mixed in (empty for silence)
    named: tuple[int, ...] = ()  # the items whose class the caption names
    parts: torch.Tensor | None = None  # (len(sources), num_samples) each source's contribution (mixtures only)


def _rms_normalised(wave: torch.Tensor) -> torch.Tensor:
    return wave / wave.pow(2).mean().sqrt().clamp_min(1e-8)


def _peak_normalised(parts: torch.Tensor) -> torch.Tensor:
    """``(K, N)`` parts scaled together so that their sum peaks at 1."""
    return parts / parts.sum(0).abs().max().clamp_min(1e-8)


def overlap_parts(a: torch.Tensor, b: torch.Tensor, level_db: float) -> torch.Tensor:
    """The two contributions ``(2, N)`` of :func:`overlap` (they sum to it)."""
    return _peak_normalised(torch.stack([_rms_normalised(a), _rms_normalised(b) * 10 ** (level_db / 20)]))


def overlap(a: torch.Tensor, b: torch.Tensor, level_db: float) -> torch.Tensor:
    """``a`` and ``b`` ``(N,)`` at equal RMS, ``b`` then ``level_db`` dB louder, peak-normalised."""
    return overlap_parts(a, b, level_db).sum(0)


def splice_parts(a: torch.Tensor, b: torch.Tensor, cut: int, fade: int, hop: int = 256) -> torch.Tensor:
    """The two contributions ``(2, N)`` of :func:`splice_at` (they sum to it): ``a`` faded out, ``b`` faded in."""
    n = a.shape[-1]
    fade = max(0, min(fade, 2 * cut, 2 * (n - cut)))
    start, end = cut - fade // 2, cut - fade // 2 + fade  # the crossfade spans [start, end)
    seg_a = _rms_normalised(loudest_segment(a, end, hop))
    seg_b = _rms_normalised(loudest_segment(b, n - start, hop))
    ramp = torch.linspace(0, 1, fade + 2)[1:-1]
    part_a = torch.cat([seg_a[:start], seg_a[start:] * (1 - ramp), a.new_zeros(n - end)])
    part_b = torch.cat([b.new_zeros(start), seg_b[:fade] * ramp, seg_b[fade:]])
    return _peak_normalised(torch.stack([part_a, part_b]))


def splice_at(a: torch.Tensor, b: torch.Tensor, cut: int, fade: int, hop: int = 256) -> torch.Tensor:
    """The loudest part of ``a`` up to the cut, then the loudest part of ``b``, each at unit RMS, with a linear
    crossfade of ``fade`` samples centred on ``cut``; peak-normalised. ``(N,)`` → ``(N,)``."""
    return splice_parts(a, b, cut, fade, hop).sum(0)


def make_example(index: int, waves: torch.Tensor, classes: Sequence[str], captions: Sequence[Sequence[str]],
                 categories: Sequence[str], cfg: MixConfig, seed: int, epoch: int, sample_rate: int) -> Example:
    """The example at ``index`` of epoch ``epoch``: item ``index`` alone or mixed with a partner of another
    class (``classes[k]`` is item k's class key, ``categories[k]`` its class name for mixture captions,
    ``captions[k]`` its captions). ``waves (N_items, num_samples)``."""
    rng = random.Random(f"{seed}/{epoch}/{index}/mix")
    u = rng.random()
    own = captions[index]
    if u < cfg.p_silence:
        return Example(torch.zeros(waves.shape[1]), rng.choice(own), "silence", (), (index,))
    kind = "overlap" if u < cfg.p_silence + cfg.p_overlap else (
        "splice" if u < cfg.p_silence + cfg.p_overlap + cfg.p_splice else "single")
    others = [k for k in range(len(classes)) if classes[k] != classes[index]]
    if kind == "single" or not others:
        return Example(waves[index], rng.choice(own), "single", (index,), (index,))
    partner = others[rng.randrange(len(others))]
    a, b = waves[index], waves[partner]
    if kind == "overlap":
        parts = overlap_parts(a, b, rng.uniform(-cfg.level_db, cfg.level_db))
    else:
        n = waves.shape[1]
        cut = int(n * rng.uniform(0.3, 0.7))
        if rng.random() < 0.5:  # which source comes first
            parts = splice_parts(a, b, cut, int(cfg.crossfade_s * sample_rate))
        else:
            parts = splice_parts(b, a, cut, int(cfg.crossfade_s * sample_rate)).flip(0)
    v = rng.random()
    if v < cfg.p_mixture_caption:
        pair = [categories[index], categories[partner]]
        rng.shuffle(pair)
        caption, named = mixture_caption(pair, rng), (index, partner)
    elif v < (1 + cfg.p_mixture_caption) / 2:
        caption, named = rng.choice(own), (index,)
    else:
        caption, named = rng.choice(captions[partner]), (partner,)
    return Example(parts.sum(0), caption, kind, (index, partner), named, parts)
