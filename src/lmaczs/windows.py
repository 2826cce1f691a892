"""Audio of any length: fixed model windows with 50 % overlap, and overlap-add of per-window masks.

Rule: a clip no longer than the backend's window is one window (padded per the backend's ``pad_mode``). A longer
clip is cut into windows whose starts are multiples of the STFT hop, half a window apart, the last one zero-padded.
Each window's mask lands on the frames of one whole-file STFT (a centred frame k of a window starting at sample s is
global frame s/hop + k) and overlapping masks are averaged with triangular weights, so the stitched mask has no
seams and the listenable audio comes from a single ISTFT of the whole file.
"""

from __future__ import annotations

import torch


def window_starts(num_samples: int, window: int, hop_length: int) -> list[int]:
    """Start samples of the windows covering ``num_samples`` (a single 0 when it fits in one window)."""
    if num_samples <= window:
        return [0]
    hop = max(hop_length, (window // 2) // hop_length * hop_length)
    starts = list(range(0, num_samples - window, hop))
    starts.append(starts[-1] + hop)
    return starts


def frame_weights(num_frames: int) -> torch.Tensor:
    """Triangular overlap-add weights ``(num_frames,)``, strictly positive at the edges."""
    k = torch.arange(num_frames, dtype=torch.float32)
    return torch.minimum(k + 1, num_frames - k) / ((num_frames + 1) / 2)


def stitch(masks: torch.Tensor, starts: list[int], hop_length: int, total_frames: int) -> torch.Tensor:
    """Overlap-add per-window masks ``(W, T_w, F)`` onto ``(total_frames, F)`` (weighted mean)."""
    w, t_w, f = masks.shape
    acc = masks.new_zeros(total_frames, f)
    norm = masks.new_zeros(total_frames, 1)
    weights = frame_weights(t_w).to(masks)[:, None]
    for mask, start in zip(masks, starts):
        first = start // hop_length
        n = min(t_w, total_frames - first)
        if n <= 0:
            continue
        acc[first:first + n] += (mask * weights)[:n]
        norm[first:first + n] += weights[:n]
    return acc / norm.clamp_min(1e-12)


class StreamStitcher:
    """:func:`stitch` one chunk of windows at a time, holding only the frames that later windows still touch.

    Feed the windows in order with :meth:`add`; it returns the frames that no later window reaches, already
    divided by their weights. :meth:`finish` returns the rest. Concatenated, the returned rows equal
    :func:`stitch` of all windows at once (the same sums in the same order).

    Args:
        window_frames: ``T_w``, frames per window.
        hop_length: STFT hop in samples (window starts are multiples of it).
        total_frames: ``T``, frames of the whole clip.
    """

    def __init__(self, window_frames: int, hop_length: int, total_frames: int):
        self.window_frames, self.hop_length, self.total_frames = window_frames, hop_length, total_frames
        self.base = 0  # first frame not yet returned
        self.acc: torch.Tensor | None = None  # (frames held, C) weighted sums from frame ``base``
        self.norm: torch.Tensor | None = None  # (frames held, 1) sums of weights

    def add(self, masks: torch.Tensor, starts: list[int], next_start: int | None) -> tuple[int, torch.Tensor]:
        """Add windows ``masks (n, T_w, C)`` starting at ``starts``; ``next_start`` is the start sample of the
        window after them (``None``: they are the last). Returns ``(first frame, rows (k, C))``, the frames that
        are now complete."""
        _, t_w, c = masks.shape
        weights = frame_weights(t_w).to(masks)[:, None]
        if self.acc is None:
            self.acc, self.norm = masks.new_zeros(0, c), masks.new_zeros(0, 1)
        for mask, start in zip(masks, starts):
            first = start // self.hop_length
            n = min(t_w, self.total_frames - first)
            if n <= 0:
                continue
            need = first + n - self.base
            if need > self.acc.shape[0]:
                grow = need - self.acc.shape[0]
                self.acc = torch.cat([self.acc, masks.new_zeros(grow, c)])
                self.norm = torch.cat([self.norm, masks.new_zeros(grow, 1)])
            lo = first - self.base
            self.acc[lo:lo + n] += (mask * weights)[:n]
            self.norm[lo:lo + n] += weights[:n]
        limit = self.total_frames if next_start is None else min(next_start // self.hop_length, self.total_frames)
        return self._emit(limit)

    def finish(self) -> tuple[int, torch.Tensor]:
        """The frames still held (all of them up to ``total_frames``)."""
        return self._emit(self.total_frames)

    def _emit(self, limit: int) -> tuple[int, torch.Tensor]:
        first = self.base
        k = max(0, min(limit - self.base, self.acc.shape[0]))
        rows = self.acc[:k] / self.norm[:k].clamp_min(1e-12)
        self.acc, self.norm = self.acc[k:].clone(), self.norm[k:].clone()  # let go of the returned rows
        self.base += k
        return first, rows
