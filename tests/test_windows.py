"""Long clips: window placement, seamless overlap-add of masks, and a 60 s real clip explained without clicks."""

import numpy as np
import pytest
import torch

from conftest import esc50_paths
from lmaczs.audio import load_audio
from lmaczs.explain import Explainer
from lmaczs.windows import frame_weights, stitch, window_starts

TINY_WINDOW, TINY_HOP = 16000, 128  # the tiny backend: 2 s at 8 kHz, STFT hop 128


@pytest.mark.parametrize("n,window,hop", [
    (16000, 16000, 128), (100, 16000, 128), (16001, 16000, 128), (480000, 16000, 128),
    (123457, 16000, 128), (1_000_000, 220500, 1024), (2_000_000, 480000, 480), (700_000, 220500, 320),
])
def test_window_starts_cover_the_clip(n, window, hop):
    starts = window_starts(n, window, hop)
    assert starts[0] == 0
    assert all(s % hop == 0 for s in starts)
    assert starts == sorted(set(starts))
    if n <= window:
        assert starts == [0]
        return
    covered = np.zeros(n, dtype=bool)
    for s in starts:
        covered[s:s + window] = True
    assert covered.all()
    steps = np.diff(starts)
    assert (steps == steps[0]).all()  # evenly spaced
    assert window // 2 - hop < steps[0] <= window // 2  # about half a window: every sample in ≥ 2 windows inside
    assert starts[-1] < n and starts[-2] + window < n  # no window starts past the end, none is redundant


def test_frame_weights_positive_symmetric():
    w = frame_weights(126)
    assert w.shape == (126,) and (w > 0).all()
    torch.testing.assert_close(w, w.flip(0))
    assert w.argmax() in (62, 63)


def _setup(n_samples: int, window: int = TINY_WINDOW, hop: int = TINY_HOP):
    starts = window_starts(n_samples, window, hop)
    return starts, window // hop + 1, n_samples // hop + 1  # starts, frames per window, frames of the file


@pytest.mark.parametrize("n_samples", [40000, 123457, 480000])
def test_stitch_constant_masks_is_constant(n_samples):
    starts, t_w, total = _setup(n_samples)
    masks = torch.full((len(starts), t_w, 5), 0.37)
    out = stitch(masks, starts, TINY_HOP, total)
    assert out.shape == (total, 5)
    torch.testing.assert_close(out, torch.full_like(out, 0.37))


@pytest.mark.parametrize("n_samples", [40000, 123457])
def test_stitch_of_a_global_ramp_is_that_ramp(n_samples):
    """Each window sees the same function of the *global* frame index: a misplaced frame would show."""
    starts, t_w, total = _setup(n_samples)
    ramp = lambda frames: frames.float()[:, None] / total * torch.linspace(0.5, 1.0, 3)  # noqa: E731
    masks = torch.stack([ramp(torch.arange(t_w) + s // TINY_HOP) for s in starts])
    out = stitch(masks, starts, TINY_HOP, total)
    torch.testing.assert_close(out, ramp(torch.arange(total)), atol=1e-6, rtol=1e-6)
    assert out.diff(dim=0).abs().max() <= 1.0 / total + 1e-6  # continuous: one ramp step per frame


def test_stitch_blends_disagreeing_windows_without_seams():
    """Windows alternating between masks 0 and 1 give a smooth blend, never a jump at a window edge."""
    starts, t_w, total = _setup(123457)
    masks = torch.stack([torch.full((t_w, 2), float(k % 2)) for k in range(len(starts))])
    out = stitch(masks, starts, TINY_HOP, total)
    assert (out >= 0).all() and (out <= 1).all()
    assert out.diff(dim=0).abs().max() < 4.0 / t_w  # a triangular cross-fade: ~2/t_w per frame
    assert out[0, 0] == 0 and out[-1, 0] == float((len(starts) - 1) % 2)  # the ends belong to one window


# -- a 60 s real clip explained with the tiny run ----------------------------------------------------------

@pytest.fixture(scope="module")
def long_clip():
    """60 s at 44.1 kHz: 12 real ESC-50 clips of different classes, 10 ms fades so the input has no clicks."""
    fade = np.linspace(0.0, 1.0, 441, dtype=np.float32)
    parts = []
    for path in esc50_paths(12):
        clip = load_audio(path, 44100).numpy().copy()
        clip[:441] *= fade
        clip[-441:] *= fade[::-1]
        parts.append(clip)
    wave = np.concatenate(parts)
    assert wave.shape[0] == 60 * 44100
    return wave


def _joins(n: int) -> list[int]:
    starts = window_starts(n, TINY_WINDOW, TINY_HOP)
    return sorted(set(starts[1:]) | {s + TINY_WINDOW for s in starts if s + TINY_WINDOW < n})


def test_long_real_clip_explanation(tiny_run, long_clip):
    ex = Explainer.load(None, tiny_run.path)
    e = ex.explain(long_clip, ["a dog barks", "rain falls", "a clock ticks"], sample_rate=44100)
    n = load_audio(long_clip, 8000, sample_rate=44100).shape[0]
    assert n == 60 * 8000
    assert e.sample_rate == 8000 and e.audio.shape == (n,) and e.residual.shape == (n,)
    assert e.mask.shape == (n // TINY_HOP + 1, 129) == e.spectrogram.shape
    assert e.window_scores.shape == (len(window_starts(n, TINY_WINDOW, TINY_HOP)), 3)
    assert np.isfinite(e.audio).all() and 0 <= e.mask.min() and e.mask.max() <= 1

    # The stitched mask moves no more from frame to frame at window joins than inside one window.
    _, wins, starts, _ = ex._windows(long_clip, 44100)
    with torch.no_grad():
        enc = ex.clap.encode_spec(ex.clap.analyze(wins)[0])
        text = ex.clap.embed_text([e.prediction])[0]
        window_masks = ex._masks(text, enc.hidden)
    inside = (window_masks[:, 1:] - window_masks[:, :-1]).abs().max().item()
    step = np.abs(np.diff(e.mask, axis=0)).max(axis=1)  # (T-1,)
    join_frames = {j // TINY_HOP for j in _joins(n)}
    at_joins = max(step[max(f - 2, 0):f + 2].max() for f in join_frames)
    assert at_joins <= inside

    # No click: near each join the explanation's largest sample-to-sample jump is not far above the
    # largest one in the surrounding second (at random positions of this audio the ratio reaches ~1.6).
    d = np.abs(np.diff(e.audio))
    for j in _joins(n):
        local = d[j - 8:j + 8].max()
        ring = np.concatenate([d[max(j - 4000, 0):j - 8], d[j + 8:j + 4000]]).max()
        assert local <= 3.0 * ring + 1e-7, f"click at sample {j}: jump {local:.2e} vs {ring:.2e} around it"


def test_long_clip_no_click_with_disagreeing_windows(tiny_run, monkeypatch):
    """A steady 440 Hz tone with window masks alternating 0.1 / 0.9: the explanation stays a smooth
    amplitude-modulated sine (a seam would leave a spike in the sine's second-difference residual)."""
    ex = Explainer.load(None, tiny_run.path)
    shape = ex.clap.mask_shape()

    def alternating(text_row, hidden):
        n = hidden[0].shape[0]
        return torch.tensor([0.1, 0.9]).repeat(n)[:n, None, None].expand(n, *shape).clone()

    monkeypatch.setattr(ex, "_masks", alternating)
    sr, w = 8000, 2 * np.pi * 440 / 8000
    tone = (0.5 * np.sin(w * np.arange(20 * sr))).astype(np.float32)
    e = ex.explain(tone, ["a", "b"], sample_rate=sr)
    a = e.audio.astype(np.float64)
    assert a.shape == tone.shape and len(e.window_scores) > 8
    residual = a[2:] - 2 * a[1:-1] + a[:-2] + (2 - 2 * np.cos(w)) * a[1:-1]  # zero for any pure 440 Hz sine
    assert np.abs(residual).max() < 0.02 * np.abs(a).max()
    # the mask really alternates (0.1 at the first window's centre, near 0.9 at the second's)
    assert e.mask[63, 0] == pytest.approx(0.1, abs=0.05) and e.mask[63 + 62, 0] > 0.8
