"""Where in a clip each prompt is found: per-frame activity, active spans, CSV and Audacity label tracks.

The activity of prompt p at frame t is the mean over frequency of p's mask at that frame, counted only in the
windows whose zero-shot probability of p reaches ``gate`` (0 in the others), and overlap-added across windows with
the triangular weights of :mod:`lmaczs.windows`::

    activity_p(t) = Σ_w v_w(t) · [prob_{w,p} ≥ gate] · mean_f M_{w,p}(t, f)  /  Σ_w v_w(t)

The gate matters: a decoder's mask follows the sound's energy for any prompt (on the shipped example clips the
masks of unrelated prompts cover as much of the spectrogram as the predicted prompt's), so the mask alone does
not say *which* sound is there; the window scores do, and the mask then says *when* inside those windows.
A frame is active when its activity reaches ``threshold``; active runs closer than ``merge_gap`` seconds are
merged and runs shorter than ``min_duration`` seconds are dropped.

Audacity label tracks (File > Import > Labels) are text lines ``start<TAB>end<TAB>label`` in seconds.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np
import torch

GATE = 0.5  # a window counts for a prompt when its zero-shot probability of the prompt is at least this
THRESHOLD = 0.25  # a frame is active when the prompt's gated mask covers at least this share of frequencies
MIN_DURATION = 0.25  # seconds: shorter active runs are dropped
MERGE_GAP = 0.5  # seconds: active runs separated by less are merged


class Segment(NamedTuple):
    """An active span of one prompt, in seconds."""

    start: float
    end: float
    label: str


def window_activity(masks: torch.Tensor, chosen: int, probs: torch.Tensor,
                    decode: Optional[Callable[[int, torch.Tensor], torch.Tensor]], gate: float = GATE
                    ) -> torch.Tensor:
    """Per-window columns to overlap-add into a timeline.

    Args:
        masks: ``(n, T_w, F)`` the explained prompt's masks of ``n`` windows.
        chosen: index of the explained prompt among the ``P`` prompts.
        probs: ``(n, P)`` the windows' zero-shot probabilities.
        decode: ``decode(p, idx)`` → ``(len(idx), T_w, F)`` masks of prompt ``p`` for windows ``idx`` (a long
            tensor); ``None``: only the explained prompt gets an activity (the others stay 0).
        gate: the probability a window needs for a prompt to count there.
    Returns:
        ``(n, T_w, 2P)``: columns ``0..P-1`` the gated mean-over-frequency activity of each prompt, columns
        ``P..2P-1`` the window probabilities repeated over the window's frames.
    """
    n, t_w, _ = masks.shape
    p_count = probs.shape[1]
    act = masks.new_zeros(n, t_w, p_count)
    passed = probs >= gate  # (n, P)
    for p in range(p_count):
        idx = torch.nonzero(passed[:, p]).flatten()
        if idx.numel() == 0:
            continue
        if p == chosen:
            act[idx, :, p] = masks[idx].mean(-1)
        elif decode is not None:
            act[idx, :, p] = decode(p, idx).mean(-1)
    return torch.cat([act, probs[:, None, :].to(masks).expand(n, t_w, p_count)], dim=-1)


def frames_to_segments(active: np.ndarray, hop_s: float, duration_s: float, label: str,
                       min_duration: float = MIN_DURATION, merge_gap: float = MERGE_GAP) -> list[Segment]:
    """Runs of ``active (T,)`` booleans as spans. Frame ``t`` is centred at ``t·hop_s`` and stands for
    ``[(t − ½)·hop_s, (t + ½)·hop_s)``, clipped to ``[0, duration_s]``."""
    active = np.asarray(active, dtype=bool)
    if not active.any():
        return []
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    firsts, lasts = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    spans: list[list[float]] = []
    for a, b in zip(firsts, lasts):
        start, end = max(0.0, (a - 0.5) * hop_s), min(duration_s, (b + 0.5) * hop_s)
        if spans and start - spans[-1][1] < merge_gap:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [Segment(float(s), float(e), label) for s, e in spans if e - s >= min_duration]


@dataclass
class Timeline:
    """Per-frame activity of prompts over one clip.

    Attributes:
        prompts: the ``P`` prompts, in the order of the columns.
        hop_s: seconds between frames (frame ``t`` is centred at ``t · hop_s``).
        duration_s: the clip's length in seconds.
        activity: ``(T, P)`` gated activity in [0, 1] (see the module docstring).
        scores: ``(T, P)`` the windows' zero-shot probabilities overlap-added onto frames, or ``None``.
        gate: the window probability each prompt needed (``None``: no gate was applied).
    """

    prompts: list[str]
    hop_s: float
    duration_s: float
    activity: np.ndarray
    scores: Optional[np.ndarray] = None
    gate: Optional[float] = GATE

    @property
    def times(self) -> np.ndarray:
        """``(T,)`` frame centres in seconds."""
        return np.arange(self.activity.shape[0]) * self.hop_s

    def active(self, threshold: float = THRESHOLD, min_duration: float = MIN_DURATION,
               merge_gap: float = MERGE_GAP) -> np.ndarray:
        """``(T, P)`` booleans: inside one of the prompt's :meth:`segments`."""
        out = np.zeros(self.activity.shape, dtype=bool)
        t = self.times
        for p, prompt in enumerate(self.prompts):
            for seg in self._segments_of(p, threshold, min_duration, merge_gap):
                out[(t >= seg.start) & (t < seg.end), p] = True
        return out

    def _segments_of(self, p: int, threshold: float, min_duration: float, merge_gap: float) -> list[Segment]:
        return frames_to_segments(self.activity[:, p] >= threshold, self.hop_s, self.duration_s, self.prompts[p],
                                  min_duration, merge_gap)

    def segments(self, threshold: float = THRESHOLD, min_duration: float = MIN_DURATION,
                 merge_gap: float = MERGE_GAP, prompts: Sequence[str] | None = None) -> list[Segment]:
        """Active spans of every prompt (or of ``prompts``), sorted by start time, then by prompt order."""
        chosen = range(len(self.prompts)) if prompts is None else [self.prompts.index(p) for p in prompts]
        segs = [(s, p) for p in chosen for s in self._segments_of(p, threshold, min_duration, merge_gap)]
        return [s for s, _ in sorted(segs, key=lambda sp: (sp[0].start, sp[1]))]

    def write_audacity(self, path: str | os.PathLike, **kwargs) -> Path:
        """Write :meth:`segments` as an Audacity label track (atomically). Returns the path."""
        from .checkpoint import atomic_write_text

        atomic_write_text(Path(path), format_audacity(self.segments(**kwargs)))
        return Path(path)

    def write_csv(self, path: str | os.PathLike, threshold: float = THRESHOLD, min_duration: float = MIN_DURATION,
                  merge_gap: float = MERGE_GAP) -> Path:
        """One row per frame: ``time_s``, then per prompt ``activity[p]``, ``score[p]`` (when known) and
        ``active[p]`` (0/1, as in the label track). Written atomically; returns the path."""
        from .checkpoint import atomic_write

        active = self.active(threshold, min_duration, merge_gap)
        header, columns = ["time_s"], [np.round(self.times, 6)]
        for p, prompt in enumerate(self.prompts):
            header.append(f"activity[{prompt}]")
            columns.append(np.round(self.activity[:, p].astype(np.float64), 6))
            if self.scores is not None:
                header.append(f"score[{prompt}]")
                columns.append(np.round(self.scores[:, p].astype(np.float64), 6))
            header.append(f"active[{prompt}]")
            columns.append(active[:, p].astype(int))

        def write(tmp: str) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(header)
                for start in range(0, len(columns[0]), 4096):  # rows in blocks: no per-row Python lists of all
                    block = [c[start:start + 4096].tolist() for c in columns]
                    w.writerows(zip(*block))

        atomic_write(Path(path), write)
        return Path(path)


def _clean_label(label: str) -> str:
    return " ".join(str(label).split())  # a tab or a newline would break the track's lines


def format_audacity(segments: Sequence[Segment]) -> str:
    """Audacity label-track text: one ``start\\tend\\tlabel`` line per segment, seconds to 6 decimals."""
    return "".join(f"{s.start:.6f}\t{s.end:.6f}\t{_clean_label(s.label)}\n" for s in segments)


def parse_audacity(text: str) -> list[Segment]:
    """Read an Audacity label track (``start\\tend\\tlabel`` lines; spectral-selection lines ``\\t...`` are
    skipped)."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("\\"):
            continue
        start, end, label = line.split("\t", 2)
        out.append(Segment(float(start), float(end), label))
    return out
