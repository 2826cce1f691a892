"""The aisfx sound-effects CNN (Ma & Lerch, ISMIR 2022), reimplemented: its log-mel front end and EmbeddingNet.

Front end (as the aisfx package computes it): 44.1 kHz peak-normalised audio → centred STFT (n_fft = win = 2048,
hop 1024, periodic Hann, constant padding) → power → 96-band HTK mel (0–22050 Hz, filters L1-normalised) →
``log10(10000·S + 1) / 9.4578`` (the package's "original" min-max scaling). Model input ``(B, T, 96)``.

EmbeddingNet: four blocks of two (3×3 conv without bias → BatchNorm → ReLU); 2×2 max-pooling after blocks 1–3;
then the mean over frequency and the max over time give a 512-d embedding. For a 5 s window (T = 216) the block
outputs are (64, 108, 48), (128, 54, 24), (256, 27, 12), (512, 27, 12).

Weights: ``assets/aisfx_backbone.safetensors`` (converted by ``tools/convert_aisfx.py`` from the ``aisfx==0.1.2``
wheel, CC BY 4.0).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..audio import Stft, mel_filterbank
from ..errors import BackendError
from .base import MelFrontEnd

SAMPLE_RATE = 44100
N_FFT = 2048
HOP = 1024
N_MELS = 96
FMIN, FMAX = 0.0, 22050.0
LOG_MAX = 9.457798957824707  # aisfx spectrogram_normalize(..., "original"): min 0, max of their training data
CHANNELS = (64, 128, 256, 512)
EMBED_DIM = 512

ASSETS = Path(__file__).resolve().parents[1] / "assets"
BACKBONE_FILE = ASSETS / "aisfx_backbone.safetensors"


def log_scale(mel_power: torch.Tensor) -> torch.Tensor:
    """aisfx compression: ``log10(10000·S + 1) / 9.4578``. Any shape."""
    return torch.log10(1e4 * mel_power + 1.0) / LOG_MAX


def aisfx_front_end() -> MelFrontEnd:
    """The aisfx log-mel front end: ``(B, N)`` 44.1 kHz wave → ``(B, N // 1024 + 1, 96)``."""
    stft = Stft(n_fft=N_FFT, hop_length=HOP, win_length=N_FFT)
    fb = mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS, FMIN, FMAX, htk=True, norm="l1")
    return MelFrontEnd(stft, fb, log_scale)


class ConvBlock(nn.Module):
    """Two (3×3 conv, no bias → BatchNorm → ReLU). ``(B, C_in, T, F)`` → ``(B, C_out, T, F)`` (no pooling)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))


class AisfxBackbone(nn.Module):
    """EmbeddingNet of aisfx. Parameter names: ``blocks.{0..3}.{conv1,bn1,conv2,bn2}.*``."""

    def __init__(self) -> None:
        super().__init__()
        chans = (1,) + CHANNELS
        self.blocks = nn.ModuleList(ConvBlock(a, b) for a, b in zip(chans[:-1], chans[1:]))

    def block_output(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Apply block ``k`` (0-based) and its pooling: ``(B, C_{k-1}, T, F)`` → ``(B, C_k, T', F')``."""
        x = self.blocks[k](x)
        return F.max_pool2d(x, 2) if k < 3 else x

    def forward_hidden(self, features: torch.Tensor, start: int = 0, stop: int = 4) -> list[torch.Tensor]:
        """Run blocks ``start..stop-1``. ``features``: ``(B, T, 96)`` when ``start == 0``, else the previous
        block's output. Returns each block's (pooled) output ``(B, C_k, T_k, F_k)``."""
        x = features.unsqueeze(1) if start == 0 else features
        out = []
        for k in range(start, stop):
            x = self.block_output(k, x)
            out.append(x)
        return out

    @staticmethod
    def pool(last: torch.Tensor) -> torch.Tensor:
        """aisfx pooling: mean over frequency, max over time. ``(B, 512, T, F)`` → ``(B, 512)``."""
        return last.mean(dim=3).amax(dim=2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T, 96)`` model input → ``(B, 512)`` embedding (as aisfx's ``get_embedding``)."""
        return self.pool(self.forward_hidden(features)[-1])


def load_backbone_state(path: str | Path = BACKBONE_FILE) -> dict[str, torch.Tensor]:
    """The converted backbone weights as float32 tensors (``blocks.*`` names)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise BackendError(f"aisfx backbone weights missing: {path} (run tools/convert_aisfx.py)")
    return {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}


def backbone_provenance(path: str | Path = BACKBONE_FILE) -> dict:
    """The provenance JSON stored next to the backbone weights (empty if absent)."""
    meta = Path(path).with_suffix(".json")
    return json.loads(meta.read_text()) if meta.is_file() else {}
