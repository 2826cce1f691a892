"""Audio front end: read, mix down, resample, fix length; STFT/ISTFT; mel filterbanks.

Everything after reading is torch, deterministic (no random crops) and differentiable where it takes tensors.

Length rule (documented in the README): a clip is resampled to the backend's rate and mixed to mono; a clip
shorter than the backend's window is zero-padded at the end and the explanation is cropped back to the input's
length; a longer clip is explained window by window (see :mod:`lmaczs.windows`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch

from .errors import AudioError

AudioInput = Union[str, os.PathLike, np.ndarray, torch.Tensor]

MIN_SECONDS = 0.1  # below this a clip carries too few frames to explain


def read_audio(path: Union[str, os.PathLike]) -> tuple[np.ndarray, int]:
    """Read a wav/flac/ogg/mp3 file. Returns ``(samples (N, C) float32, sample_rate)``."""
    import soundfile as sf

    p = Path(path)
    if not p.is_file():
        raise AudioError(f"audio file not found: {p}")
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for corrupt/unknown files
        raise AudioError(f"cannot read audio file {p}: {str(exc).splitlines()[0]}") from None
    return data, int(sr)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Mix ``(N,)``, ``(N, C)`` or ``(C, N)`` (C ≤ 8 < N) samples down to ``(N,)``."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise AudioError(f"audio array must be 1-D or 2-D, got shape {tuple(x.shape)}")
    if x.size == 0:
        return np.zeros(0, dtype=np.float32)  # the mean of no samples would be NaN
    channel_axis = 0 if x.shape[0] <= 8 and x.shape[0] < x.shape[1] else 1
    return x.mean(axis=channel_axis)


def resample(samples: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``(N,)`` samples with soxr (high quality, deterministic)."""
    if sr_in == sr_out:
        return samples
    import soxr

    return soxr.resample(samples, sr_in, sr_out, quality="HQ").astype(np.float32)


def load_audio(audio: AudioInput, target_sr: int, sample_rate: int | None = None, *,
               name: str | None = None) -> torch.Tensor:
    """Load a path or an array as mono float32 at ``target_sr``, validated.

    Args:
        audio: a file path, or a 1-D ``(N,)`` / 2-D ``(C, N)`` or ``(N, C)`` array or tensor.
        target_sr: the rate to resample to.
        sample_rate: the array's rate (required for arrays, ignored for paths).
    Returns:
        ``(N,)`` float32 tensor at ``target_sr``.
    Raises:
        AudioError: unreadable, empty, too short, silent or non-finite audio.
    """
    if isinstance(audio, (str, os.PathLike)):
        data, sr = read_audio(audio)
        label = name or str(audio)
    else:
        if sample_rate is None:
            raise AudioError("an audio array needs sample_rate= (e.g. sample_rate=44100)")
        data = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
        sr = int(sample_rate)
        label = name or "audio array"
    mono = to_mono(data)
    if mono.size == 0:
        raise AudioError(f"{label}: audio is empty")
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"{label}: audio contains NaN or infinite samples")
    if mono.size < MIN_SECONDS * sr:
        raise AudioError(f"{label}: audio is {mono.size / sr:.3f} s long; at least {MIN_SECONDS} s is needed")
    if float(np.max(np.abs(mono))) == 0.0:
        raise AudioError(f"{label}: audio is silent (all samples are zero)")
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
