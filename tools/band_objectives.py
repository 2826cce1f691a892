#!/usr/bin/env python
"""Which L_ZS variant teaches a decoder to keep the prompted source of a mixture? A controlled answer on the band
CLAP of tests/band_clap.py (its embedding is the energy in four frequency bands; prompt "band k" is band k): a tiny
decoder trained on overlaps of bands 0 and 2 and single sources, then the share of mask mass in the prompted band
on held-out 0 dB overlaps (0.5 = blind, 1 = only the prompted band).

    python tools/band_objectives.py 150
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from band_clap import BandClap, band_share, train_band_decoder  # noqa: E402

VARIANTS = {
    "L_ZS, silence baseline (abs)": dict(baseline="silence"),
    "+ out term": dict(baseline="silence", lambda_out=1.0),
    "hinge": dict(baseline="silence", similarity="hinge"),
    "hinge + out term": dict(baseline="silence", lambda_out=1.0, similarity="hinge"),
    "the paper's L_ZS (no baseline, abs)": dict(baseline="none"),
    "the paper's L_ZS + source targets": dict(baseline="none", source_targets=True),
    "hinge + out term + source targets": dict(baseline="silence", lambda_out=1.0, similarity="hinge",
                                              source_targets=True),
}

if __name__ == "__main__":
    torch.set_num_threads(1)
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 150
    backend = BandClap()
    for name, kw in VARIANTS.items():
        t0 = time.time()
        decoder, terms = train_band_decoder(backend, steps, **kw)
        rng = np.random.default_rng(99)
        shares = [round(band_share(decoder, backend, band, rng), 3) for band in (0, 2)]
        print(f"{name}: prompted-band share (band 0, band 2) {shares}; mask mean {terms['sparsity']:.3f}; "
              f"{time.time() - t0:.0f} s", flush=True)
