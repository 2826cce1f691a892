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


def train_band_decoder(backend: BandClap, steps: int, seed: int = 0, source_targets: bool = False,
                       **loss_options) -> tuple[torch.nn.Module, dict]:
    """A tiny decoder trained for ``steps`` L_ZS steps (batch 4, λ1 0.1, λ2 0) on overlaps of bands 0 and 2 at
    ±6 dB and single sources, each with the prompt of band 0 or 2. ``source_targets``: an overlap under one
    band's prompt is compared with that band alone (``train.source_references``). ``loss_options`` go to
    ``lzs_step``. Returns the decoder and the last step's loss terms."""
    from lmaczs.decoder import build_decoder
    from lmaczs.mixtures import overlap_parts
    from lmaczs.train import SourceSelection, lzs_step

    torch.manual_seed(seed)
    n, sr = backend.num_samples, backend.sample_rate
    decoder = build_decoder(backend, widths=[8, 16, 16, 16])
    opt = torch.optim.Adam(decoder.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    terms = None
    for _ in range(steps):
        waves, caps, parts, bands = [], [], torch.zeros(4, 2, n), []
        for k in range(4):
            a, b = band_noise(0, n, sr, rng), band_noise(2, n, sr, rng)
            kind = rng.integers(3)
            if kind == 0:
                parts[k] = overlap_parts(a, b, rng.uniform(-6, 6))
            w = parts[k].sum(0) if kind == 0 else (a if kind == 1 else b)
            waves.append(w / w.abs().max())
            bands.append(int(rng.choice([0, 2])))
            caps.append(f"band {bands[-1]}")
        overlapped = parts.abs().amax((1, 2)) > 0
        select = torch.tensor([[bands[i] // 2 if overlapped[j] else -1 for j in range(4)] for i in range(4)])
        sources = SourceSelection(parts, select) if source_targets else None
        terms = lzs_step(backend, decoder, torch.stack(waves), backend.embed_text(caps), 0.1, 0.0,
                         sources=sources, **loss_options)
        opt.zero_grad()
        terms.total.backward()
        opt.step()
    return decoder.eval(), terms.as_floats()


def band_share(decoder: torch.nn.Module, backend: BandClap, band: int, rng: np.random.Generator,
               n_items: int = 8) -> float:
    """Mask mass in ``band``'s bins over the other source's bins, for its prompt, on 0 dB overlaps of 0 and 2."""
    from lmaczs.mixtures import overlap

    n, sr = backend.num_samples, backend.sample_rate
    freqs = np.fft.rfftfreq(backend.front.stft.n_fft, 1 / sr)
    bins = {k: torch.tensor((freqs >= lo) & (freqs <= hi)) for k, (lo, hi) in BAND_HZ.items()}
    other = 2 if band == 0 else 0
    w = torch.stack([overlap(band_noise(0, n, sr, rng), band_noise(2, n, sr, rng), 0.0) for _ in range(n_items)])
    with torch.no_grad():
        x, _ = backend.analyze(backend.prepare(w))
        masks = decoder(backend.embed_text([f"band {band}"] * n_items), backend.encode_spec(x).hidden)
    own, rest = float(masks[..., bins[band]].mean()), float(masks[..., bins[other]].mean())
    return own / (own + rest)
