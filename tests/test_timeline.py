"""Figures and timelines: dB scaling, the Audacity label track, the timeline CSV, the PNG, and ``--labels``.

The masks here are built by hand, so the answer is known: a clip whose mask is active from 12 s to 20 s must get
one label covering 12-20 s (to a frame), a blip shorter than ``min_duration`` none, and two runs closer than
``merge_gap`` one.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from lmaczs.explain import Explanation
from lmaczs.timeline import (MERGE_GAP, MIN_DURATION, Segment, Timeline, format_audacity, frames_to_segments,
                             parse_audacity, window_activity)
from lmaczs.viz import SpectrogramPreview, amplitude_to_db, domain_power, masked_power, power_to_db

SR, HOP = 8000, 128
HOP_S = HOP / SR  # 16 ms per frame


# -- dB ----------------------------------------------------------------------------------------------------------
def test_power_to_db_values():
    p = np.array([1.0, 0.1, 0.01, 1e-4, 0.0])
    np.testing.assert_allclose(power_to_db(p, top_db=None), [0, -10, -20, -40, -100])
    np.testing.assert_allclose(power_to_db(p, top_db=30), [0, -10, -20, -30, -30])  # floor: max − top_db
    np.testing.assert_allclose(power_to_db(4 * p[:3], ref=4.0, top_db=None), [0, -10, -20])  # relative to ref
    np.testing.assert_allclose(amplitude_to_db(np.array([1.0, -0.1, 0.01]), top_db=None), [0, -20, -40])
    a = np.array([[0.5, 2.0]])
    np.testing.assert_allclose(domain_power(np.log1p(a), "stft"), a ** 2)  # X = log1p|S| → |S|²
    np.testing.assert_allclose(domain_power(a, "mel"), a)  # mel X is already power
    np.testing.assert_allclose(masked_power(np.log1p(a), np.ones_like(a), "stft"), a ** 2)
    np.testing.assert_allclose(masked_power(np.log1p(a), np.zeros_like(a), "stft"), 0)


def test_preview_pools_power_in_time_and_is_chunk_invariant():
    rng = np.random.default_rng(0)
    x, m = rng.random((1001, 6)), rng.random((1001, 6))
    whole = SpectrogramPreview(1001, 6, "stft", max_columns=100)
    whole.add(x, m)
    parts = SpectrogramPreview(1001, 6, "stft", max_columns=100)
    for a, b in [(0, 3), (3, 250), (250, 251), (251, 1001)]:
        parts.add(x[a:b], m[a:b])
    r, q = whole.result(), parts.result()
    assert r["factor"] == 11 and r["mask"].shape == (91, 6)
    for k in ("power_in", "power_out", "mask"):
        np.testing.assert_allclose(r[k], q[k], rtol=1e-12)
    np.testing.assert_allclose(r["power_in"][0], (np.expm1(x[:11]) ** 2).mean(0))  # mean power of 11 frames
    np.testing.assert_allclose(r["mask"][-1], m[990:].mean(0))  # the last column holds the 11 frames left


# -- label tracks ------------------------------------------------------------------------------------------------
def test_audacity_format_and_round_trip():
    segs = [Segment(1.5, 2.25, "dog barking"), Segment(61.0, 75.123456789, "a\tdog\nbarks")]
    text = format_audacity(segs)
    assert text == "1.500000\t2.250000\tdog barking\n61.000000\t75.123457\ta dog barks\n"
    assert all(len(line.split("\t")) == 3 for line in text.splitlines())
    assert parse_audacity(text) == [Segment(1.5, 2.25, "dog barking"), Segment(61.0, 75.123457, "a dog barks")]
    assert parse_audacity(text + "\\\t100.0\t2000.0\n") == parse_audacity(text)  # spectral-selection lines
    assert format_audacity([]) == ""


def test_frames_to_segments_merges_and_drops():
    active = np.zeros(1000, bool)
    active[100:200] = True  # 1.6 s
    active[210:260] = True  # 0.16 s later: merged with the run before
    active[500:505] = True  # 0.08 s blip: dropped
    segs = frames_to_segments(active, HOP_S, 1000 * HOP_S, "x", min_duration=MIN_DURATION, merge_gap=MERGE_GAP)
    assert segs == [Segment(pytest.approx(99.5 * HOP_S), pytest.approx(259.5 * HOP_S), "x")]
    assert frames_to_segments(active, HOP_S, 16.0, "x", merge_gap=0.0)[0].end == pytest.approx(199.5 * HOP_S)
    edge = np.ones(10, bool)
    assert frames_to_segments(edge, 0.1, 0.95, "x", min_duration=0) == [Segment(0.0, 0.95, "x")]  # clipped


def _explanation(seconds: float = 40.0, span=(12.0, 20.0), blip=(30.0, 30.1)) -> Explanation:
    """A hand-built explanation at 8 kHz: mask 0.05 everywhere, 0.8 over ``span`` and over the short ``blip``;
    a spectrogram with a loud band (a 1 kHz tone) and a quiet floor."""
    n = int(seconds * SR)
    t_frames = n // HOP + 1
    times = np.arange(t_frames) * HOP_S
    mask = np.full((t_frames, 129), 0.05, np.float32)
    for a, b in (span, blip):
        mask[(times >= a) & (times < b)] = 0.8
    spec = np.full((t_frames, 129), np.log1p(0.01), np.float32)  # |S| = 0.01 → −40 dB below the band
    spec[:, 32] = np.log1p(1.0)  # 1 kHz at 8 kHz / 256-point bins
    return Explanation(scores={"dog": 0.9, "rain": 0.1}, prediction="dog", mask=mask,
                       audio=np.zeros(n, np.float32), residual=np.zeros(n, np.float32), sample_rate=SR,
                       spectrogram=spec, window_scores=np.array([[0.9, 0.1]]),
                       backend={"spec": "tiny:0", "domain": "stft"}, source="clip.wav", hop_s=HOP_S)


def test_known_active_span_gives_one_label_covering_it():
    e = _explanation()
    labels = e.labels()
    assert len(labels) == 1  # the 0.1 s blip is dropped
    (start, end, label), = labels
    assert label == "dog"
    assert start == pytest.approx(12.0, abs=HOP_S) and end == pytest.approx(20.0, abs=HOP_S)
    assert start <= 12.0 and end >= 20.0 - HOP_S / 2  # covers the span
    assert e.labels(min_duration=0.0)[1].start == pytest.approx(30.0, abs=HOP_S)  # the blip, when allowed
    assert e.labels(threshold=0.9) == []


def test_save_labels_track_and_csv(tmp_path):
    e = _explanation()
    paths = e.save_labels(tmp_path, "clip")
    assert paths["labels"].name == "clip.labels.txt" and paths["timeline"].name == "clip.timeline.csv"
    lines = paths["labels"].read_text().splitlines()
    assert len(lines) == 1
    start, end, label = lines[0].split("\t")
    assert label == "dog"
    assert float(start) == pytest.approx(12.0, abs=HOP_S) and float(end) == pytest.approx(20.0, abs=HOP_S)

    with paths["timeline"].open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["time_s", "activity[dog]", "active[dog]"]  # no scores without a gated timeline
    assert len(rows) == e.mask.shape[0]
    t = np.array([float(r["time_s"]) for r in rows])
    np.testing.assert_allclose(t, np.arange(len(rows)) * HOP_S, atol=1e-6)
    act = np.array([float(r["activity[dog]"]) for r in rows])
    np.testing.assert_allclose(act, e.mask.mean(1), atol=1e-6)
    on = np.array([r["active[dog]"] == "1" for r in rows])
    assert on[(t > 12.05) & (t < 19.95)].all() and not on[(t < 11.9) | (t > 20.1)].any()


def test_timeline_csv_with_scores_and_several_prompts(tmp_path):
    t_frames = 500
    act = np.zeros((t_frames, 2), np.float32)
    act[100:300, 1] = 0.6
    scores = np.tile(np.array([[0.2, 0.8]], np.float32), (t_frames, 1))
    tl = Timeline(prompts=["a, b", "rain"], hop_s=0.02, duration_s=10.0, activity=act, scores=scores)
    with tl.write_csv(tmp_path / "t.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["time_s", "activity[a, b]", "score[a, b]", "active[a, b]", "activity[rain]", "score[rain]",
                       "active[rain]"]
    assert rows[150][1:] == ["0.0", "0.2", "0", "0.6", "0.8", "1"]
    assert tl.segments() == [Segment(pytest.approx(1.99), pytest.approx(5.99), "rain")]
    track = parse_audacity(tl.write_audacity(tmp_path / "t.txt").read_text())
    assert [s.label for s in track] == ["rain"]


def test_window_activity_gates_by_window_score():
    masks = torch.full((3, 4, 5), 0.5)
    probs = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]])
    calls = []

    def decode(p, idx):
        calls.append((p, idx.tolist()))
        return torch.full((len(idx), 4, 5), 0.25)

    cols = window_activity(masks, 0, probs, decode, gate=0.5)
    assert cols.shape == (3, 4, 4)
    assert calls == [(1, [1])]  # the other prompt is decoded only where it passes the gate
    np.testing.assert_allclose(cols[:, 0, 0], [0.5, 0.0, 0.5])  # explained prompt: not in window 1 (0.4 < 0.5)
    np.testing.assert_allclose(cols[:, 0, 1], [0.0, 0.25, 0.0])
    np.testing.assert_allclose(cols[:, 2, 2:], probs)  # the scores ride along
    assert window_activity(masks, 0, probs, None)[1, 0, 1] == 0  # no decoder: others stay 0


# -- figures -----------------------------------------------------------------------------------------------------
def _panel_data(ax) -> np.ndarray:
    """The values a spectrogram panel shows, ``(F, columns)`` (an image, or a mesh on a log axis)."""
    artist = (ax.images or ax.collections)[0]
    return np.asarray(artist.get_array()).reshape(129, -1)


def _panels(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


@pytest.mark.parametrize("seconds,log_freq", [(40.0, False), (5.0, True)])
def test_figure_png_in_db_with_axes_in_seconds(tmp_path, seconds, log_freq):
    import matplotlib.pyplot as plt

    e = _explanation(seconds, span=(1.0, 3.0), blip=(4.0, 4.05)) if seconds < 10 else _explanation(seconds)
    fig = e.figure(log_freq=log_freq)
    panels = _panels(fig)
    spec_axes = panels[:3]
    assert [ax.get_title().split()[0] for ax in spec_axes] == ["input", "mask", "explanation:"]
    assert spec_axes[0].get_ylabel() == "frequency (Hz)"
    for ax in panels:
        lo, hi = ax.get_xlim()
        assert lo == pytest.approx(0.0, abs=1e-9) and hi == pytest.approx(seconds, abs=HOP_S)
    assert any(ax.get_xlabel() == "time (s)" for ax in panels)
    assert (spec_axes[0].get_yscale() == "log") == log_freq
    # the input panel is in dB re its max: the 1 kHz band at 0 dB, the |S| = 0.01 floor at -40 dB
    db = _panel_data(spec_axes[0])
    assert db.max() == pytest.approx(0.0, abs=1e-6)
    assert np.median(db) == pytest.approx(-40.0, abs=0.01)
    out = _panel_data(spec_axes[2])
    assert out.max() < -1.0  # the explanation, on the input's scale, is quieter (mask ≤ 0.8 in log1p)
    if seconds > 20:
        assert len(panels) == 4 and "timeline" in panels[3].get_title()
        assert [t.get_text() for t in panels[3].get_yticklabels()] == ["dog"]
    plt.close(fig)

    paths = e.save(tmp_path, "clip", labels=True, log_freq=log_freq)
    with Image.open(paths["png"]) as im:
        im.load()
        assert im.format == "PNG" and im.width > 1000 and im.height > 350
        if seconds > 20:
            assert im.height > im.width * 0.6  # stacked panels and the timeline
    assert {p.name for p in tmp_path.iterdir()} == {"clip.explanation.wav", "clip.png", "clip.json",
                                                   "clip.labels.txt", "clip.timeline.csv"}


def test_cli_labels_flag(tiny_run, tmp_path, capsys):
    import soundfile as sf

    from conftest import esc50_paths
    from lmaczs.audio import load_audio
    from lmaczs.cli import main

    wave = np.concatenate([load_audio(p, 8000).numpy() for p in esc50_paths(3)])  # 15 s, several windows
    clip = tmp_path / "three.wav"
    sf.write(clip, wave, 8000)
    out = tmp_path / "out"
    code = main(["explain", str(clip), "-p", "a dog barks", "-p", "rain falls", "--decoder", str(tiny_run.path),
                 "--out", str(out), "--labels", "--log-freq"])
    printed = capsys.readouterr().out
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"three.explanation.wav", "three.png", "three.json",
                                               "three.labels.txt", "three.timeline.csv"}
    assert "three.labels.txt" in printed and "three.timeline.csv" in printed
    for line in (out / "three.labels.txt").read_text().splitlines():
        start, end, label = line.split("\t")
        assert 0 <= float(start) < float(end) <= 15.0 + 1e-6 and label in ("a dog barks", "rain falls")
    with (out / "three.timeline.csv").open(newline="") as fh:
        header = next(csv.reader(fh))
    assert header == ["time_s", "activity[a dog barks]", "score[a dog barks]", "active[a dog barks]",
                      "activity[rain falls]", "score[rain falls]", "active[rain falls]"]
