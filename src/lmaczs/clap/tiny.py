"""A tiny random CLAP for fast tests: seeded, so the same spec always builds the same weights."""

from __future__ import annotations

import hashlib
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..audio import Stft, mel_filterbank
from .base import AudioEncoding, ClapBackend, MelFrontEnd, freeze


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())


class _TinyText(nn.Module):
    """Bag of hashed character trigrams → linear: deterministic, no tokenizer files."""

    buckets = 2048

    def __init__(self, dim: int):
        super().__init__()
        self.bag = nn.EmbeddingBag(self.buckets, 64, mode="mean")
        self.proj = nn.Linear(64, dim)

    def ids(self, text: str) -> list[int]:
        t = f"  {text.lower().strip()}  "
        return [int.from_bytes(hashlib.md5(t[i:i + 3].encode()).digest()[:4], "little") % self.buckets
                for i in range(len(t) - 2)]

    def forward(self, prompts: Sequence[str]) -> torch.Tensor:
        ids = [self.ids(p) for p in prompts]
        flat = torch.tensor([i for row in ids for i in row], device=self.proj.weight.device)
        offsets = torch.tensor([0] + [len(r) for r in ids[:-1]], device=flat.device).cumsum(0)
        return self.proj(self.bag(flat, offsets))


class TinyClap(ClapBackend):
    """4-block CNN on a 32-band log-mel at 8 kHz, 2 s windows; hashed-trigram text tower; D = 32.

    Hidden shapes for one window: (8, 63, 16), (16, 31, 8), (32, 15, 4), (64, 15, 4).
    """

    sample_rate = 8000
    num_samples = 16000
    pad_mode = "zero"
    peak_normalize = True

    def __init__(self, seed: int = 0, embed_dim: int = 32):
        super().__init__()
        self.spec = f"tiny:{seed}"
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            stft = Stft(n_fft=256, hop_length=128)
            fb = mel_filterbank(self.sample_rate, 256, 32, 0.0, 4000.0, htk=True, norm="l1")
            self.front = MelFrontEnd(stft, fb, lambda m: torch.log10(1e4 * m + 1.0) / 4.0)
            chans = [1, 8, 16, 32, 64]
            self.blocks = nn.ModuleList(_block(a, b) for a, b in zip(chans[:-1], chans[1:]))
            self.audio_proj = nn.Linear(64, embed_dim)
            self.text = _TinyText(embed_dim)
            self.register_buffer("_logit_scale", torch.tensor(10.0))
        finally:
            torch.random.set_rng_state(gen_state)
        freeze(self)

    def encode_features(self, features: torch.Tensor) -> AudioEncoding:
        x = features.unsqueeze(1)
        hidden = []
        for k, block in enumerate(self.blocks):
            x = block(x)
            if k < 3:
                x = F.max_pool2d(x, 2)
            hidden.append(x)
        pooled = x.mean(dim=3).amax(dim=2)
        return AudioEncoding(F.normalize(self.audio_proj(pooled), dim=-1), hidden)

    def embed_text(self, prompts: Sequence[str]) -> torch.Tensor:
        return F.normalize(self.text(prompts), dim=-1)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self._logit_scale

    def frame_head(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """Its linear audio projection as a :class:`Projection` without standardisation or MLP."""
        lin = self.audio_proj
        state = {"mean": torch.zeros(lin.in_features), "std": torch.ones(lin.in_features),
                 "linear.weight": lin.weight.detach().clone(), "linear.bias": lin.bias.detach().clone()}
        return {"d_in": lin.in_features, "d_out": lin.out_features, "hidden": 0}, state

    def randomizable_blocks(self) -> list[nn.Module]:
        """The four conv blocks, shallow → deep."""
        return list(self.blocks)
