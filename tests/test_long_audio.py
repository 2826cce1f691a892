"""Long audio, beyond tests/test_windows.py: per-window scores, and windowing that does not depend on the grid.

A 60 s file (12 real ESC-50 clips end to end, written as FLAC) is explained in 50 %-overlap windows. Each row of
``window_scores`` must be the score of that window alone. With a decoder whose mask follows the content (not the
position in the window), a window grid shifted by 30 frames and a single whole-file pass must give the same mask,
aligned at lag 0, without seams at the joins. Stitching by plain summation (no triangular weights) or windows
misplaced by 2 frames fail this test (measured).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import concatenated_clips, varied_tiny_explainer
from lmaczs.audio import load_audio, peak_normalize
from lmaczs.clap import load_backend
from lmaczs.explain import Explainer
from lmaczs.windows import window_starts

PROMPTS = ["a dog barking", "rain falling", "a baby crying", "birds chirping", "a clock ticking"]
SR = 8000  # the tiny backend's rate
HOP = 128  # its STFT hop


@pytest.fixture(scope="module")
def long_file(tmp_path_factory):
    return concatenated_clips(tmp_path_factory.mktemp("long"), 12, "sixty_seconds.flac")  # 12 classes


@pytest.fixture(scope="module")
def explainer() -> Explainer:
    return varied_tiny_explainer()


class ContentDecoder(torch.nn.Module):
    """A stand-in decoder whose mask follows the content: per-frame z-score of the first hidden map, upsampled.

    The CNN features are local, so the mask of a frame depends on the sound around it, not on where the window
    starts (the tiny random decoders are partly locked to the position in the window, which hides stitching errors).
    """

    def __init__(self, n_freqs: int):
        super().__init__()
        self.n_freqs = n_freqs

    def forward(self, text: torch.Tensor, hidden: list[torch.Tensor]) -> torch.Tensor:
        e = hidden[0].mean(1)  # (B, T/2, F_1)
        z = (e - e.mean(2, keepdim=True)) / (e.std(2, keepdim=True) + 1e-6)
        size = (2 * e.shape[1], self.n_freqs)
        return torch.sigmoid(2 * F.interpolate(z[:, None], size=size, mode="bilinear", align_corners=False)[:, 0])


def joins(starts: list[int], window_frames: int, total: int) -> list[int]:
    """Frames where a window enters or leaves the stitched mask."""
    edges = {s // HOP for s in starts[1:]} | {s // HOP + window_frames for s in starts[:-1]}
    return sorted(j for j in edges if 1 < j < total - 1)


def seam_ratio(mask: np.ndarray, at: list[int]) -> float:
    """Mean frame-to-frame change of the mask across the ``at`` boundaries over the mean change elsewhere."""
    dt = np.abs(np.diff(mask, axis=0)).mean(1)  # dt[t] = |M[t+1] − M[t]|
    near = np.zeros(len(dt), bool)
    near[[j - 1 for j in at]] = True
    return float(dt[near].mean() / dt[~near].mean())


def lagged_corr(a: np.ndarray, b: np.ndarray, lag: int, margin: int = 100) -> float:
    """Correlation of ``a[t + lag]`` with ``b[t]`` over the frames both cover (``margin`` trimmed at the ends)."""
    n = min(len(a), len(b))
    return float(np.corrcoef(a[margin + lag:n - margin + lag].ravel(), b[margin:n - margin].ravel())[0, 1])


def test_window_scores_are_those_of_each_window_alone(explainer, long_file):
    e = explainer.explain(long_file, PROMPTS)
    wave = load_audio(long_file, SR)
    assert e.audio.shape == wave.shape == (60 * SR,)
    starts = window_starts(len(wave), explainer.clap.num_samples, HOP)
    assert e.window_scores.shape == (len(starts), len(PROMPTS)) == (60, len(PROMPTS))
    np.testing.assert_allclose(list(e.scores.values()), e.window_scores.mean(0), atol=1e-6)
    for k in (0, 23, len(starts) - 1):  # the last window is zero-padded past the end of the file
        alone = explainer.classify(wave[starts[k]:starts[k] + explainer.clap.num_samples].numpy(), PROMPTS,
                                   sample_rate=SR)
        np.testing.assert_allclose(e.window_scores[k], list(alone.values()), rtol=0, atol=1e-5)
    assert np.abs(e.window_scores[0] - e.window_scores[23]).max() > 1e-4  # other sounds, other scores
    assert e.to_dict()["windows"] == len(starts)


def test_windowing_is_translation_consistent(long_file):
    backend = load_backend("tiny")
    ex = Explainer(backend, None)
    ex.decoder = ContentDecoder(backend.mask_shape()[1])
    wave = load_audio(long_file, SR)
    shift = 30  # frames; windows start every 62 frames
    a = ex.explain(wave.numpy(), PROMPTS, sample_rate=SR).mask
    b = ex.explain(np.concatenate([np.zeros(shift * HOP, np.float32), wave.numpy()]), PROMPTS,
                   sample_rate=SR).mask[shift:]
    # the same content under another window grid gets the same mask, and aligned at lag 0
    grid = {lag: lagged_corr(b, a, lag) for lag in range(-3, 4)}
    assert grid[0] > 0.95 and max(grid, key=grid.get) == 0, grid
    assert seam_ratio(a, joins(window_starts(len(wave), backend.num_samples, HOP), 126, len(a))) < 2
    # and it lines up with one pass over the whole file (no windows at all)
    with torch.no_grad():
        x, _ = backend.analyze(peak_normalize(wave)[0][None])
        whole = ex.decoder(None, backend.encode_spec(x).hidden)[0].numpy()
    full = {lag: lagged_corr(a, whole, lag) for lag in range(-3, 4)}
    assert full[0] > 0.8 and max(full, key=full.get) == 0, full
