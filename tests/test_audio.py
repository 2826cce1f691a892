"""Audio front end: STFT/ISTFT round trips, mel filterbanks, loading and validation, masking-domain synthesis."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import HAVE_ESC50, esc50_paths, needs_esc50
from lmaczs.audio import Stft, fix_length, hz_to_mel, load_audio, mel_filterbank, peak_normalize
from lmaczs.clap import load_backend
from lmaczs.errors import AudioError

# (n_fft, hop) of the shipped/peer front ends: aisfx (2048/1024), MS-CLAP CNN14 (1024/320), HTSAT (1024/480).
STFT_CONFIGS = [(2048, 1024), (1024, 320), (1024, 480), (512, 160)]


def _tone(sr: int, seconds: float = 1.0, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    rng = np.random.default_rng(0)
    return (0.5 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg, f"error message must be one non-empty line: {msg!r}"
    return msg


def _signal(sr: int, seconds: float) -> torch.Tensor:
    """A real ESC-50 clip when the shared data is there, otherwise a chirp with noise."""
    n = int(sr * seconds)
    if HAVE_ESC50:
        return fix_length(load_audio(esc50_paths(1)[0], sr), n)
    t = torch.arange(n) / sr
    noise = torch.randn(n, generator=torch.Generator().manual_seed(0))
    return 0.4 * torch.sin(2 * math.pi * (200 + 1500 * t) * t) + 0.05 * noise


# -- STFT / ISTFT ------------------------------------------------------------------------------------------

@needs_esc50
@pytest.mark.parametrize("n_fft,hop", STFT_CONFIGS)
def test_istft_of_stft_reproduces_real_clips(n_fft, hop):
    waves = torch.stack([load_audio(p, 44100) for p in esc50_paths(3)])  # 3 × 5 s at 44.1 kHz
    stft = Stft(n_fft, hop)
    spec = stft.forward(waves)
    assert spec.shape == (3, stft.num_frames(waves.shape[1]), n_fft // 2 + 1)
    assert spec.is_complex()
    err = (stft.inverse(spec, waves.shape[1]) - waves).abs().max().item()
    assert err < 1e-4


def test_istft_of_stft_for_the_tiny_backend(tiny_backend):
    stft = tiny_backend.front.stft
    for length in (tiny_backend.num_samples, 12345):  # one window, and an odd length
        wave = _signal(tiny_backend.sample_rate, 2.0)[:length][None]
        spec = stft.forward(wave)
        assert spec.shape[1] == stft.num_frames(length)
        back = stft.inverse(spec, length)
        assert back.shape == wave.shape
        assert (back - wave).abs().max().item() < 1e-4


# -- mel filterbanks against an independent formula ----------------------------------------------------------

def _mel(f: float, htk: bool) -> float:
    if htk:
        return 2595.0 * math.log10(1.0 + f / 700.0)
    # Slaney's Auditory Toolbox: 200/3 Hz per mel up to 1 kHz (= 15 mel), then 27 mels per factor 6.4
    return f / (200.0 / 3) if f < 1000.0 else 15.0 + 27.0 * math.log(f / 1000.0) / math.log(6.4)


def _hz(m: float, htk: bool) -> float:
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    return m * 200.0 / 3 if m < 15.0 else 1000.0 * 6.4 ** ((m - 15.0) / 27.0)


def _reference_bank(sr, n_fft, n_mels, fmin, fmax, htk, norm):
    """Triangles between consecutive mel-spaced edges, evaluated bin by bin. Returns (n_mels, F)."""
    lo, hi = _mel(fmin, htk), _mel(fmax, htk)
    edges = [_hz(lo + (hi - lo) * k / (n_mels + 1), htk) for k in range(n_mels + 2)]
    bank = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        left, centre, right = edges[m], edges[m + 1], edges[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * sr / n_fft
            if left <= f <= centre:
                bank[m, k] = (f - left) / (centre - left)
            elif centre < f <= right:
                bank[m, k] = (right - f) / (right - centre)
        if norm == "slaney":
            bank[m] *= 2.0 / (right - left)
        elif norm == "l1":
            bank[m] /= bank[m].sum()
    return bank


def test_mel_scales_known_values():
    assert float(hz_to_mel(1000.0, htk=False)) == pytest.approx(15.0)
    assert float(hz_to_mel(2000.0, htk=False)) == pytest.approx(15.0 + 27 * math.log(2) / math.log(6.4))
    assert float(hz_to_mel(700.0, htk=True)) == pytest.approx(2595.0 * math.log10(2.0))


@pytest.mark.parametrize("htk", [True, False])
@pytest.mark.parametrize("norm", ["slaney", "l1", None])
@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [(8000, 64, 6, 0.0, 4000.0), (16000, 128, 10, 100.0, 7000.0)])
def test_mel_filterbank_matches_independent_formula(htk, norm, sr, n_fft, n_mels, fmin, fmax):
    fb = mel_filterbank(sr, n_fft, n_mels, fmin, fmax, htk=htk, norm=norm)
    assert fb.shape == (n_fft // 2 + 1, n_mels) and fb.dtype == torch.float32
    ref = _reference_bank(sr, n_fft, n_mels, fmin, fmax, htk, norm)
    np.testing.assert_allclose(fb.numpy().T, ref, rtol=1e-5, atol=1e-7)
    if norm == "l1":
        np.testing.assert_allclose(fb.sum(0).numpy(), np.ones(n_mels), atol=1e-6)


def test_mel_filterbank_unknown_norm():
    with pytest.raises(ValueError):
        mel_filterbank(8000, 64, 6, 0.0, 4000.0, norm="max")


# -- load_audio -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
@pytest.mark.parametrize("channels", [1, 2])
def test_load_audio_formats(tmp_path, fmt, channels):
    if fmt.upper() not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot handle {fmt}")
    sr, target = 22050, 16000
    mono = _tone(sr)
    data = mono if channels == 1 else np.stack([mono, 0.5 * mono], axis=1)  # (N, C) as files store it
    path = tmp_path / f"clip.{fmt}"
    sf.write(path, data, sr)
    same_rate = load_audio(path, sr)
    expected = mono if channels == 1 else 0.75 * mono  # mean of the channels
    assert same_rate.dtype == torch.float32 and same_rate.ndim == 1
    lossless = fmt in ("wav", "flac")
    if lossless:
        assert same_rate.shape[0] == mono.size
        np.testing.assert_allclose(same_rate.numpy(), expected, atol=2 / 32768)
    resampled = load_audio(path, target)
    assert abs(resampled.shape[0] - mono.size * target / sr) <= 1
    # content survives decoding and resampling: correlate with the same tone built at the target rate
    ref = _tone(target)[: resampled.shape[0]]
    mid = slice(500, resampled.shape[0] - 500)
    corr = np.corrcoef(resampled.numpy()[mid], ref[mid])[0, 1]
    assert corr > (0.99 if lossless else 0.9)
    scale = float(np.std(resampled.numpy()[mid]) / np.std(ref[mid]))
    assert scale == pytest.approx(1.0 if channels == 1 else 0.75, rel=0.05)


@needs_esc50
def test_load_audio_real_clip_resampling_length():
    path = esc50_paths(1)[0]
    info = sf.info(path)
    for target in (8000, 16000, 32000, 44100, 48000):
        wave = load_audio(path, target)
        assert abs(wave.shape[0] - info.frames * target / info.samplerate) <= 1


def test_load_audio_arrays():
    sr = 22050
    mono = _tone(sr)
    stereo_cn = np.stack([mono, -0.5 * mono])  # (C, N)
    expected = 0.25 * mono
    for arr in (stereo_cn, stereo_cn.T, torch.from_numpy(stereo_cn), torch.from_numpy(stereo_cn.T.copy())):
        got = load_audio(arr, sr, sample_rate=sr)
        assert got.shape == (mono.size,)
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-7)
    np.testing.assert_allclose(load_audio(mono, sr, sample_rate=sr).numpy(), mono)
    assert load_audio(torch.from_numpy(mono), 8000, sample_rate=sr).shape[0] == pytest.approx(8000, abs=1)
    # a float64 array comes back float32
    assert load_audio(mono.astype(np.float64), sr, sample_rate=sr).dtype == torch.float32


def test_load_audio_errors(tmp_path):
    sr = 16000
    cases = {}
    with pytest.raises(AudioError) as e:
        load_audio(tmp_path / "missing.wav", sr)
    cases["missing"] = _one_line(e)
    assert "missing.wav" in cases["missing"]

    for suffix in (".wav", ".flac", ".mp3"):
        corrupt = tmp_path / f"corrupt{suffix}"
        corrupt.write_bytes(np.random.default_rng(1).bytes(4096))
        with pytest.raises(AudioError) as e:
            load_audio(corrupt, sr)
        assert corrupt.name in _one_line(e)

    empty_file = tmp_path / "zero_frames.wav"  # neutral names: the match is on the message
    sf.write(empty_file, np.zeros(0, dtype=np.float32), sr)
    with pytest.raises(AudioError, match="empty") as e:
        load_audio(empty_file, sr)
    _one_line(e)

    silent_file = tmp_path / "zeros.wav"
    sf.write(silent_file, np.zeros(sr, dtype=np.float32), sr)
    with pytest.raises(AudioError, match="silent") as e:
        load_audio(silent_file, sr)
    _one_line(e)

    bad_arrays = {
        "empty": np.zeros(0, dtype=np.float32),
        "silent": np.zeros(sr, dtype=np.float32),
        "NaN": np.where(np.arange(sr) == 5, np.nan, 0.1).astype(np.float32),
        "infinite": np.where(np.arange(sr) == 5, np.inf, 0.1).astype(np.float32),
        "long": 0.1 * np.ones(int(0.05 * sr), dtype=np.float32),  # too short: "... s long; at least ..."
        "2-D": np.ones((2, 3, sr), dtype=np.float32),
    }
    for word, arr in bad_arrays.items():
        with pytest.raises(AudioError, match=word) as e:
            load_audio(arr, sr, sample_rate=sr)
        _one_line(e)

    with pytest.raises(AudioError, match="sample_rate") as e:
        load_audio(_tone(sr), sr)
    _one_line(e)


def test_fix_length_and_peak_normalize():
    w = torch.arange(1, 6, dtype=torch.float32)
    assert fix_length(w, 3).tolist() == [1, 2, 3]
    assert fix_length(w, 7).tolist() == [1, 2, 3, 4, 5, 0, 0]
    x = torch.tensor([[0.5, -2.0], [0.0, 0.0]])
    y, peak = peak_normalize(x)
    assert y[0].tolist() == [0.25, -1.0] and peak[0].item() == 2.0
    assert torch.isfinite(y).all() and y[1].abs().max() == 0


# -- masking domains: synthesis -------------------------------------------------------------------------------

class _SpyStft(Stft):
    """An Stft that records the complex spectrogram handed to ``inverse``."""

    seen: list = []

    def inverse(self, spec, length):
        _SpyStft.seen.append(spec.detach().clone())
        return super().inverse(spec, length)


@pytest.fixture(params=["stft", "mel"])
def domain_backend(request):
    return load_backend("tiny", request.param)  # fresh: the session backend's domain must not change


def _window(backend, length=None):
    wave = _signal(backend.sample_rate, 2.0)
    return wave[: length or backend.num_samples][None]


@pytest.mark.parametrize("length", [16000, 15999, 9001])
def test_all_ones_mask_reproduces_input(domain_backend, length):
    wave = _window(domain_backend, length)
    x, spec = domain_backend.analyze(wave)
    assert x.shape[-1] == domain_backend.mask_shape()[1]
    out = domain_backend.domain.synthesize(torch.ones_like(x), spec, length)
    assert out.shape == (1, length)
    assert (out - wave).abs().max().item() < 1e-4


def test_all_zeros_mask_gives_silence(domain_backend):
    wave = _window(domain_backend)
    x, spec = domain_backend.analyze(wave)
    out = domain_backend.domain.synthesize(torch.zeros_like(x), spec, wave.shape[1])
    assert out.shape == wave.shape
    assert out.abs().max().item() < 1e-6


def test_half_mask_keeps_original_phase(domain_backend):
    """M = 0.5 on log1p|S| gives magnitude expm1(0.5·log1p|S|) = sqrt(1 + |S|) − 1 with the input's phase."""
    b = domain_backend
    b.front.stft = _SpyStft(b.front.stft.n_fft, b.front.stft.hop_length)
    wave = _window(b)
    x, spec = b.analyze(wave)
    _SpyStft.seen.clear()
    out = b.domain.synthesize(torch.full_like(x, 0.5), spec, wave.shape[1])
    (given,) = _SpyStft.seen
    mag = spec.abs()
    torch.testing.assert_close(given.abs(), torch.sqrt(1 + mag) - 1, atol=1e-5, rtol=1e-5)
    loud = mag > 1e-3
    phase_err = (given[loud] / given[loud].abs() - spec[loud] / mag[loud]).abs().max().item()
    assert phase_err < 1e-4
    torch.testing.assert_close(out, b.front.stft.inverse(given, wave.shape[1]))
    # and the half mask really changed the audio (it is not the identity)
    assert (out - wave).abs().max().item() > 1e-2


def test_domain_analysis_and_input_transform(domain_backend):
    """X ≥ 0 and the InputTf of an unmasked X is exactly the backend's own front end."""
    b = domain_backend
    wave = _window(b)
    x, _ = b.analyze(wave)
    assert x.shape == (1, *b.mask_shape()) and (x >= 0).all()
    torch.testing.assert_close(b.domain.input_transform(x), b.front(wave), atol=1e-4, rtol=1e-4)
