"""Shared helpers for the demo/report/top-k tests: a tiny backend with a seeded random decoder (no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ESC50 = DATA / "esc50"


def make_tiny_run(run_dir: Path, seed: int = 0) -> Path:
    """Write a decoder run directory for ``tiny:0`` in a second or so.

    The decoder is random but its text cross-attention outputs are not zero (they are at initialisation), so
    different prompts get different masks, as with a trained decoder.
    """
    from lmaczs.checkpoint import save_decoder
    from lmaczs.clap import load_backend
    from lmaczs.decoder import CrossAttention, DecoderConfig, MaskDecoder

    backend = load_backend("tiny:0")
    cfg = DecoderConfig(hidden_shapes=[tuple(s) for s in backend.hidden_shapes()],
                        mask_shape=tuple(backend.mask_shape()), text_dim=backend.embed_dim, widths=[8, 16, 16, 16])
    gen = torch.Generator().manual_seed(seed)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        decoder = MaskDecoder(cfg)
    finally:
        torch.random.set_rng_state(state)
    with torch.no_grad():
        for m in decoder.modules():
            if isinstance(m, CrossAttention):
                m.proj_out.weight.copy_(torch.randn(m.proj_out.weight.shape, generator=gen) * 0.5)
    save_decoder(Path(run_dir), decoder, {"backend": backend.describe()})
    return Path(run_dir)


def esc50_clip(category: str = "dog") -> Path | None:
    """A real ESC-50 clip of ``category`` (first in name order), or None when the data is absent."""
    import csv

    meta = ESC50 / "meta" / "esc50.csv"
    if not meta.is_file():
        return None
    with meta.open() as f:
        names = sorted(r["filename"] for r in csv.DictReader(f) if r["category"] == category)
    for name in names:
        path = ESC50 / "audio" / Path(name).with_suffix(".flac").name
        if path.is_file():
            return path
    return None


def tone(seconds: float = 2.0, sr: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
            ).astype(np.float32)


@pytest.fixture(scope="module")
def dog():
    """A real ESC-50 dog clip (skips when ../shared/data is absent)."""
    clip = esc50_clip("dog")
    if clip is None:
        pytest.skip("real audio absent: ../shared/data/esc50 not found")
    return clip
