"""A CLAP whose answer is known, for tests about what a decoder learns: its audio embedding is the energy in four
frequency bands (plus a constant, so silence has a fixed embedding), and the prompt ``"band k"`` is band k's axis.
The hidden maps are the tiny CNN's (random but spatially faithful), so a decoder must learn from L_ZS alone which
time-frequency region carries a prompt's evidence."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lmaczs.clap.base import AudioEncoding
from lmaczs.clap.tiny import TinyClap

# Hz ranges that fall into mel groups 0 and 2 of the tiny front end (32 HTK mels, 0-4 kHz, groups of 8 bands)
BAND_HZ = {0: (100.0, 400.0), 2: (1200.0, 1900.0)}


class BandClap(TinyClap):
    embed_dim_ = 5

    def __init__(self) -> None:
        super().__init__(seed=0, embed_dim=5)
        self.spec = "band-test"

    def encode_features(self, features: torch.Tensor) -> AudioEncoding:
        hidden = super().encode_features(features).hidden
        groups = features.unflatten(2, (4, 8)).mean(dim=(1, 3))  # (B, 4) mean log-mel per band group
        emb = torch.cat([groups, torch.full_like(groups[:, :1], 0.05)], dim=1)
        return AudioEncoding(F.normalize(emb, dim=-1), hidden)

    def embed_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """``"band k"`` → axis k; any other prompt → the constant axis (what silence looks like)."""
        axes = [int(p.split()[-1]) if p.startswith("band ") else 4 for p in prompts]
        return F.one_hot(torch.tensor(axes), 5).float()


def band_noise(band: int, n: int, sr: int, rng: np.random.Generator) -> torch.Tensor:
    """Noise band-limited to ``BAND_HZ[band]`` with a random on/off envelope, unit RMS. ``(n,)``."""
    lo, hi = BAND_HZ[band]
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec[(f < lo) | (f > hi)] = 0
    x = np.fft.irfft(spec, n)
    env = np.repeat(rng.uniform(0.3, 1.0, 8), -(-n // 8))[:n]
    x = x * env
    return torch.from_numpy(x / np.sqrt(np.mean(x ** 2))).float()
