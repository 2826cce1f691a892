"""Audio front end: read, mix down, resample, fix length; STFT/ISTFT; mel filterbanks.

Everything after reading is torch, deterministic (no random crops) and differentiable where it takes tensors.

Length rule (documented in the README): a clip is resampled to the backend's rate and mixed to mono; a clip
shorter than the backend's window is zero-padded at the end and the explanation is cropped back to the input's
length; a longer clip is explained window by window (see :mod:`lmaczs.windows`).
"""

from __future__ import annotations

import errno
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch

from .errors import AudioError, first_line

AudioInput = Union[str, os.PathLike, np.ndarray, torch.Tensor]

MIN_SECONDS = 0.1  # below this a clip carries too few frames to explain
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1_000, 768_000  # accepted input rates (Hz)
MAX_CHANNELS = 64  # a 2-D array's shorter axis is its channels when it has at most this many
MIN_PEAK = 1e-6  # -120 dBFS: audio whose samples (or whose deviations from their mean) stay below is empty


def _sniff_mp3(path: Path) -> bool:
    """Whether a ``.mp3`` file starts like MP3 data: an ID3v2 tag, or an MPEG audio frame header in its first
    64 KiB. Text or other junk named ``.mp3`` would otherwise reach libmpg123, which prints notes on stderr."""
    with path.open("rb") as fh:
        head = fh.read(65536)
    if head[:3] == b"ID3":
        return True
    k = head.find(b"\xff")
    while 0 <= k < len(head) - 2:
        b1, b2 = head[k + 1], head[k + 2]  # frame sync (11 bits set), then version, layer, bitrate, rate
        if b1 & 0xE0 == 0xE0 and (b1 >> 3) & 3 != 1 and (b1 >> 1) & 3 != 0 and b2 >> 4 != 15 and (b2 >> 2) & 3 != 3:
            return True
        k = head.find(b"\xff", k + 1)
    return False


def _missing_reason(p: Path) -> str:
    """Why a path is not a regular file, for the message."""
    try:
        os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"audio file {p} is a symbolic link loop"
        if p.is_symlink():
            return f"audio file {p} is a broken symbolic link"
        return f"audio file not found: {p}"
    return f"{p} is a folder, not an audio file" if p.is_dir() else f"{p} is not a regular file"


def check_sample_rate(sample_rate: object, label: str) -> int:
    """An integral sample rate in the accepted range (``MIN_SAMPLE_RATE`` … ``MAX_SAMPLE_RATE``)."""
    ok = isinstance(sample_rate, (int, float, np.integer, np.floating)) and not isinstance(sample_rate, bool)
    if ok:
        ok = math.isfinite(float(sample_rate)) and float(sample_rate) == int(sample_rate)
    if not ok or not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE:
        raise AudioError(f"{label}: sample rate {sample_rate!r} is not accepted; give a whole number of Hz from "
                         f"{MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} (e.g. 16000, 44100)")
    return int(sample_rate)


def check_audio_path(path: Union[str, os.PathLike]) -> Path:
    """Cheap checks of an audio file before decoding it: a regular file, and MP3 data if named ``.mp3``."""
    p = Path(path)
    if not p.is_file():
        raise AudioError(_missing_reason(p))
    try:
        is_mp3 = p.suffix.lower() != ".mp3" or _sniff_mp3(p)
    except OSError as exc:
        raise AudioError(f"cannot read audio file {p}: {exc.strerror or first_line(exc)}") from None
    if not is_mp3:
        raise AudioError(f"cannot read {p}: it is not a readable audio file (no MP3 data: no ID3 tag or MPEG "
                         "frame)")
    return p


def read_audio(path: Union[str, os.PathLike]) -> tuple[np.ndarray, int]:
    """Read a wav/flac/ogg/mp3 file. Returns ``(samples (N, C) float32, sample_rate)``."""
    import soundfile as sf

    p = check_audio_path(path)
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except OSError as exc:
        raise AudioError(f"cannot read audio file {p}: {exc.strerror or first_line(exc)}") from None
    except Exception as exc:  # soundfile raises several types for corrupt/unknown files
        detail = first_line(exc).replace(f"Error opening {str(p)!r}: ", "")
        if "does not exist" in detail:  # what libsndfile says of a .mp3 it cannot decode
            detail = "not valid audio data"
        raise AudioError(f"cannot read {p}: it is not a readable audio file ({detail})") from None
    return data, check_sample_rate(sr, str(p))


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Mix ``(N,)``, ``(C, N)`` or ``(N, C)`` samples down to ``(N,)``.

    The shorter axis of a 2-D array is its channels (at most ``MAX_CHANNELS``; a clip is never that short):
    ``(16, N)`` is 16 channels whichever way round. A 2-D array without such an axis is refused.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise AudioError(f"audio array must be 1-D or 2-D, got shape {tuple(x.shape)}")
    if x.size == 0:
        return np.zeros(0, dtype=np.float32)  # the mean of no samples would be NaN
    channels = min(x.shape)
    if channels > MAX_CHANNELS:
        raise AudioError(f"cannot tell channels from samples in an audio array of shape {tuple(x.shape)}: pass "
                         f"(N,) mono, or (C, N) / (N, C) with at most {MAX_CHANNELS} channels")
    return x.mean(axis=0 if x.shape[0] == channels else 1)


def _as_numeric(audio: object, label: str) -> np.ndarray:
    """An array or tensor of real numbers as numpy (complex, object, text and bool data refused)."""
    if isinstance(audio, torch.Tensor):
        t = audio.detach().cpu()
        if t.is_complex():
            raise AudioError(f"{label} is complex; pass the real signal (e.g. x.real), not a spectrum")
        if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
            t = t.float()  # numpy has no bfloat16
        data = t.numpy()
    else:
        try:
            data = np.asarray(audio)
        except (ValueError, TypeError) as exc:
            raise AudioError(f"{label} is not an array of numbers of one shape (ragged or mixed data: "
                             f"{type(exc).__name__})") from None
    if data.dtype.kind == "c":
        raise AudioError(f"{label} is complex; pass the real signal (e.g. x.real), not a spectrum")
    if data.dtype.kind not in "iuf":
        raise AudioError(f"{label} holds {data.dtype} values; pass real numbers (a float or integer array)")
    return data


def check_signal(mono: np.ndarray, label: str, min_peak: float = MIN_PEAK) -> None:
    """Refuse audio with nothing to explain: near-silent (peak below ``min_peak``) or a constant (DC) offset."""
    peak = float(np.max(np.abs(mono)))
    if peak < min_peak:
        raise AudioError(f"{label}: audio is near-silent (peak {peak:.3g}, below {min_peak:g}): nothing to explain")
    mean = float(np.mean(mono, dtype=np.float64))
    if float(np.max(np.abs(mono.astype(np.float64) - mean))) < min_peak:
        raise AudioError(f"{label}: audio is a constant (DC) offset of {mean:.3g} and nothing else: nothing to "
                         "explain")


def resample(samples: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``(N,)`` samples with soxr (high quality, deterministic)."""
    if sr_in == sr_out:
        return samples
    import soxr

    return soxr.resample(samples, sr_in, sr_out, quality="HQ").astype(np.float32)


def load_audio(audio: AudioInput, target_sr: int, sample_rate: int | None = None, *,
               name: str | None = None, min_seconds: float = MIN_SECONDS, require_signal: bool = False
               ) -> torch.Tensor:
    """Load a path or an array as mono float32 at ``target_sr``, validated.

    Args:
        audio: a file path, or a 1-D ``(N,)`` / 2-D ``(C, N)`` or ``(N, C)`` array or tensor of real numbers
            (the shorter axis of a 2-D array is its channels, see :func:`to_mono`).
        target_sr: the rate to resample to.
        sample_rate: the array's rate in Hz, from 1000 to 768000 (required for arrays, ignored for paths).
        min_seconds: shorter audio is refused (dataset loaders pass 0: a 0.097 s UrbanSound8K slice is data).
        require_signal: also refuse audio with nothing to explain (:func:`check_signal`: near-silent or DC only).
    Returns:
        ``(N,)`` float32 tensor at ``target_sr``.
    Raises:
        AudioError: unreadable, empty, too short, silent or non-finite audio; complex or non-numeric arrays;
            sample rates out of range.
    """
    if isinstance(audio, (str, os.PathLike)):
        data, sr = read_audio(audio)
        label = name or str(audio)
        mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]  # files are (N, C)
    else:
        label = name or "audio array"
        if sample_rate is None:
            raise AudioError("an audio array needs sample_rate= (e.g. sample_rate=44100)")
        sr = check_sample_rate(sample_rate, label)
        mono = to_mono(_as_numeric(audio, label))
    if mono.size == 0:
        raise AudioError(f"{label}: audio is empty")
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"{label}: audio contains NaN or infinite samples")
    if mono.size < min_seconds * sr:
        raise AudioError(f"{label}: audio is {mono.size / sr:.3f} s long; at least {min_seconds} s is needed")
    if float(np.max(np.abs(mono))) == 0.0:
        raise AudioError(f"{label}: audio is silent (all samples are zero)")
    if require_signal:
        check_signal(mono, label)
    return torch.from_numpy(np.ascontiguousarray(resample(mono, sr, target_sr)))


def fix_length(wave: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Zero-pad at the end or crop from the start to ``num_samples``. ``(..., N) -> (..., num_samples)``."""
    n = wave.shape[-1]
    if n >= num_samples:
        return wave[..., :num_samples]
    return torch.nn.functional.pad(wave, (0, num_samples - n))


def peak_normalize(wave: torch.Tensor, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale each ``(..., N)`` wave to peak 1. Returns ``(normalised, peak (..., 1))``."""
    peak = wave.abs().amax(dim=-1, keepdim=True).clamp_min(eps)
    return wave / peak, peak


@dataclass(frozen=True)
class Stft:
    """A centred STFT with a periodic Hann window (constant padding, as librosa ≥ 0.10)."""

    n_fft: int
    hop_length: int
    win_length: int | None = None
    pad_mode: str = "constant"

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.hop_length + 1

    def _window(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.hann_window(self.win_length or self.n_fft, periodic=True, device=device, dtype=dtype)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` real → ``(B, T, F)`` complex."""
        spec = torch.stft(wave, self.n_fft, self.hop_length, self.win_length,
                          window=self._window(wave.device, wave.dtype), center=True,
                          pad_mode=self.pad_mode, return_complex=True)
        return spec.transpose(-1, -2)

    def inverse(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """``(B, T, F)`` complex → ``(B, length)`` real."""
        real_dtype = spec.real.dtype
        return torch.istft(spec.transpose(-1, -2), self.n_fft, self.hop_length, self.win_length,
                           window=self._window(spec.device, real_dtype), center=True, length=length)


def hz_to_mel(f: np.ndarray | float, htk: bool) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    # Slaney: linear below 1 kHz, logarithmic above
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def mel_to_hz(m: np.ndarray, htk: bool) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float, *,
                   htk: bool = False, norm: str | None = "slaney") -> torch.Tensor:
    """Triangular mel filters as librosa builds them. Returns ``(n_fft//2+1, n_mels)`` float32.

    ``norm``: ``"slaney"`` (area normalisation), ``"l1"`` (each filter sums to 1) or ``None``.
    """
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_pts = mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels + 2), htk)
    fdiff = np.diff(mel_pts)
    ramps = mel_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))  # (n_mels, n_freqs)
    if norm == "slaney":
        weights *= (2.0 / (mel_pts[2:n_mels + 2] - mel_pts[:n_mels]))[:, None]
    elif norm == "l1":
        weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-10)
    elif norm is not None:
        raise ValueError(f"unknown mel norm {norm!r}")
    return torch.from_numpy(weights.T.astype(np.float32))


def loudest_segment(wave: torch.Tensor, length: int, hop: int) -> torch.Tensor:
    """The ``length`` samples of ``wave (N,)`` with the most energy, starting at a multiple of ``hop``."""
    if wave.shape[-1] <= length:
        return torch.nn.functional.pad(wave, (0, length - wave.shape[-1]))
    energy = torch.nn.functional.pad(wave.double().pow(2).cumsum(0), (1, 0))
    starts = torch.arange(0, wave.shape[-1] - length + 1, max(1, hop))
    best = int(starts[(energy[starts + length] - energy[starts]).argmax()])
    return wave[best:best + length]
