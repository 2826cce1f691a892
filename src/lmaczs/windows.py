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
