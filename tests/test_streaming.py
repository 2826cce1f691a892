"""The bounded-memory path for long audio (lmaczs.longaudio) gives what the in-memory path gives.

A 40 s file of 8 real ESC-50 clips (44.1 kHz FLAC, so the streamed resampler is exercised) is explained with the
tiny backend, 3 windows per chunk (so 40 windows make 14 chunks), once in memory and once streamed: scores,
window scores, mask, spectrogram, explanation, residual, original and timeline agree to 1e-5, with and without a
target, with a contrast prompt, for top-k, and for the files ``save`` writes. The pieces are checked on their own
too: chunked stitching, whole-file STFT frames and ISTFT samples for several STFT geometries, and the spooled wave.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import concatenated_clips, varied_tiny_explainer
from lmaczs.audio import Stft, load_audio
from lmaczs.errors import AudioError
from lmaczs.explain import Explainer
from lmaczs.longaudio import StreamInverse, Workdir, row_blocks, spool_audio, stft_frames
from lmaczs.windows import StreamStitcher, stitch, window_starts

PROMPTS = ["a dog barking", "rain falling", "a baby crying", "birds chirping"]
ARRAYS = ("mask", "spectrogram", "audio", "residual", "original")
ATOL = 1e-5


@pytest.fixture(scope="module")
def forty_seconds(tmp_path_factory):
    return concatenated_clips(tmp_path_factory.mktemp("stream"), 8, "forty_seconds.flac")


@pytest.fixture(scope="module")
def explainer() -> Explainer:
    ex = varied_tiny_explainer()
    ex.chunk_windows = 3
    return ex


def assert_same(a, b):
    assert a.prediction == b.prediction and a.contrast == b.contrast
    assert list(a.scores) == list(b.scores)
    np.testing.assert_allclose(list(a.scores.values()), list(b.scores.values()), atol=ATOL, rtol=0)
    np.testing.assert_allclose(a.window_scores, b.window_scores, atol=ATOL, rtol=0)
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape, name
        np.testing.assert_allclose(x, np.asarray(y), atol=ATOL, rtol=0, err_msg=name)
    assert a.timeline.prompts == b.timeline.prompts
    np.testing.assert_allclose(a.timeline.activity, b.timeline.activity, atol=ATOL, rtol=0)
    np.testing.assert_allclose(a.timeline.scores, b.timeline.scores, atol=ATOL, rtol=0)
    assert a.mask_mean == pytest.approx(b.mask_mean, abs=1e-6)
    assert a.labels() == b.labels() or all(abs(s.start - t.start) < 0.05 and abs(s.end - t.end) < 0.05
                                           for s, t in zip(a.labels(), b.labels()))


@pytest.mark.parametrize("kwargs", [{}, {"target": "rain falling"}, {"target": "a dog barking",
                                                                     "contrast": "birds chirping"}])
def test_streamed_equals_in_memory(explainer, forty_seconds, kwargs):
    a = explainer.explain(forty_seconds, PROMPTS, stream=False, **kwargs)
    b = explainer.explain(forty_seconds, PROMPTS, stream=True, **kwargs)
    n = 40 * 8000
    assert a.audio.shape == (n,) and len(a.window_scores) == len(window_starts(n, 16000, 128)) == 40
    assert isinstance(b.mask, np.memmap) and isinstance(b.audio, np.memmap) and b.extra["streamed"]
    assert not isinstance(a.mask, np.memmap) and "streamed" not in a.extra
    assert_same(a, b)


def test_streamed_topk_and_classify_equal_in_memory(explainer, forty_seconds):
    ranked_a = explainer.explain_topk(forty_seconds, PROMPTS, k=2, stream=False)
    ranked_b = explainer.explain_topk(forty_seconds, PROMPTS, k=2, stream=True)
    assert [e.extra["rank"] for e in ranked_b] == [1, 2]
    for a, b in zip(ranked_a, ranked_b):
        assert_same(a, b)
    memory = explainer.classify(forty_seconds, PROMPTS)
    old = explainer.stream_over_s
    try:
        explainer.stream_over_s = 10.0  # classify streams clips longer than this
        streamed = explainer.classify(forty_seconds, PROMPTS)
    finally:
        explainer.stream_over_s = old
    np.testing.assert_allclose(list(memory.values()), list(streamed.values()), atol=ATOL, rtol=0)


def test_streamed_save_writes_the_same_files(explainer, forty_seconds, tmp_path):
    a = explainer.explain(forty_seconds, PROMPTS, stream=False)
    b = explainer.explain(forty_seconds, PROMPTS, stream=True)
    pa = a.save(tmp_path / "memory", labels=True)
    pb = b.save(tmp_path / "stream", labels=True)
    assert {k: p.name for k, p in pa.items()} == {k: p.name for k, p in pb.items()}
    wa, sra = sf.read(pa["wav"], dtype="float32")
    wb, srb = sf.read(pb["wav"], dtype="float32")
    assert sra == srb == 8000 and wa.shape == wb.shape == (40 * 8000,)
    np.testing.assert_allclose(wa, wb, atol=ATOL, rtol=0)
    ja, jb = json.loads(pa["json"].read_text()), json.loads(pb["json"].read_text())
    assert jb.pop("streamed") is True
    assert ja["mask_shape"] == jb["mask_shape"] and ja["duration_s"] == jb["duration_s"] == 40.0
    assert ja["mask_mean"] == pytest.approx(jb["mask_mean"], abs=1e-6)
    assert pa["labels"].read_text().count("\n") == pb["labels"].read_text().count("\n")


def test_streamed_work_folder_goes_with_the_explanation(explainer, forty_seconds):
    import gc

    e = explainer.explain(forty_seconds, PROMPTS, stream=True)
    folder = e._store["work"].path
    assert (folder / "wave.f32").is_file() and (folder / "explanation" / "mask.f32").is_file()
    assert not list(folder.glob("hidden*.f32"))  # the spilled hidden maps are gone once the masks are made
    del e
    gc.collect()
    assert not folder.exists()


def test_short_clips_do_not_stream(explainer, forty_seconds):
    assert explainer._use_stream(forty_seconds, None, None) is False  # 40 s < stream_over_s = 60 s
    assert explainer._use_stream(forty_seconds, None, True) is True
    assert explainer._use_stream(np.zeros(16000, np.float32), 8000, True) is False  # one window: never


# -- the pieces --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk", [1, 2, 5, 100])
def test_stream_stitcher_equals_stitch(chunk):
    n, t_w, hop = 123457, 126, 128
    starts = window_starts(n, 16000, hop)
    total = n // hop + 1
    masks = torch.rand(len(starts), t_w, 3, generator=torch.Generator().manual_seed(0))
    st = StreamStitcher(t_w, hop, total)
    pieces, expect_first = [], 0
    for i in range(0, len(starts), chunk):
        j = min(len(starts), i + chunk)
        first, rows = st.add(masks[i:j], starts[i:j], starts[j] if j < len(starts) else None)
        assert first == expect_first
        expect_first += rows.shape[0]
        pieces.append(rows)
    first, rows = st.finish()
    assert rows.shape[0] == 0 and first == total
    torch.testing.assert_close(torch.cat(pieces), stitch(masks, starts, hop, total), rtol=0, atol=0)


class _Float64Stft(Stft):
    def forward(self, wave):  # like the HF backend's: FFT in float64
        return super().forward(wave.to(torch.float64)).to(torch.complex64)


@pytest.mark.parametrize("stft", [Stft(256, 128), Stft(2048, 1024, 2048), Stft(1024, 320, pad_mode="reflect"),
                                  _Float64Stft(1024, 480, pad_mode="reflect")], ids=str)
def test_chunked_stft_and_inverse_equal_whole_file(stft, tmp_path):
    rng = np.random.default_rng(0)
    n = 50_003
    wave = (0.3 * rng.standard_normal(n)).astype(np.float32)
    work = Workdir(tmp_path)
    disk = spool_audio(wave, 8000, 8000, work.path)
    full = stft.forward(torch.from_numpy(wave)[None])[0]
    total = full.shape[0]
    assert total == stft.num_frames(n)
    scale = torch.tensor(1.7)
    full_scaled = stft.forward((torch.from_numpy(wave) / scale)[None])[0]
    inv = StreamInverse(stft, n, total)
    cuts = sorted({0, 1, 7, total // 3, total // 3 + 1, total - 3, total})  # chunks of 1 to many frames
    frames, samples = [], []
    for a, b in zip(cuts[:-1], cuts[1:]):
        part = stft_frames(stft, disk, a, b, scale, torch.device("cpu"))
        frames.append(part)
        samples.append(inv.push(part))
    torch.testing.assert_close(torch.cat(frames), full_scaled, rtol=0, atol=1e-6)
    whole = stft.inverse(full_scaled[None], n)[0]
    out = torch.cat(samples)
    assert out.shape == (n,)
    torch.testing.assert_close(out, whole, rtol=0, atol=1e-6)


def test_spool_equals_load_audio_and_checks_like_it(tmp_path):
    rng = np.random.default_rng(1)
    stereo = (0.2 * rng.standard_normal((3 * 44100 + 17, 2))).astype(np.float32)
    path = tmp_path / "stereo.flac"
    sf.write(path, stereo, 44100, subtype="PCM_24")
    work = Workdir(tmp_path)
    disk = spool_audio(path, 8000, None, work.path, block_frames=10_000)  # many blocks
    expect = load_audio(path, 8000).numpy()
    assert disk.length == expect.shape[0]
    np.testing.assert_array_equal(np.asarray(disk.data), expect)
    assert disk.peak == float(np.abs(expect).max())
    np.testing.assert_array_equal(disk.read(-5, 3), np.concatenate([np.zeros(5, np.float32), expect[:3]]))
    np.testing.assert_array_equal(np.concatenate([r for _, r in row_blocks(disk.data, 999)]), expect)

    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(44100, np.float32), 44100)
    with pytest.raises(AudioError, match="silent"):
        spool_audio(silent, 8000, None, work.path)
    bad = tmp_path / "nan.wav"
    x = np.full(44100, 0.1, np.float32)
    x[30000] = np.nan
    sf.write(bad, x, 44100, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        spool_audio(bad, 8000, None, work.path, block_frames=4096)
    dc = tmp_path / "dc.wav"
    sf.write(dc, np.full(44100, 0.25, np.float32), 44100, subtype="FLOAT")
    with pytest.raises(AudioError, match="DC"):
        spool_audio(dc, 8000, None, work.path)
