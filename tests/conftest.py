"""Shared test fixtures: where the real audio is, a tiny CLAP backend, and a tiny trained decoder run.

Real audio lives in ``../shared/data`` beside the repository root (read-only). Tests that need it use the
``esc50_dir`` fixture (or the ``needs_esc50`` marker) and are skipped with a clear reason when it is absent.
Helpers are importable from test files (pytest puts ``tests/`` on ``sys.path``): ``from conftest import ...``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

# One intra-op thread: the suite shares 2 cores with other work, and two torch threads competing with other
# processes run these tiny models several times slower than one (override: LMACZS_TEST_THREADS=N).
torch.set_num_threads(int(os.environ.get("LMACZS_TEST_THREADS", "1")))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ESC50_DIR = SHARED_DATA / "esc50"
HAVE_ESC50 = (ESC50_DIR / "meta" / "esc50.csv").is_file()
HAVE_ALL_DATA = all((SHARED_DATA / d).is_dir() for d in ("esc50", "urbansound8k", "ljspeech"))
needs_all_data = pytest.mark.skipif(not HAVE_ALL_DATA, reason=f"ESC-50, UrbanSound8K and LJ Speech not all found "
                                                              f"under {SHARED_DATA}")
needs_esc50 = pytest.mark.skipif(not HAVE_ESC50, reason=f"real ESC-50 audio not found at {ESC50_DIR} "
                                                         "(../shared/data beside the repository root)")

# The tiny decoder used throughout the tests (small widths keep every test fast).
TINY_WIDTHS = [8, 16, 16, 16]


def esc50_paths(n: int | None = None, *, fold: int | None = 4, target: int | None = None) -> list[Path]:
    """Real ESC-50 clips in meta order (one per class first, so a handful of clips covers many classes)."""
    if not HAVE_ESC50:
        pytest.skip(f"real ESC-50 audio not found at {ESC50_DIR}")
    with (ESC50_DIR / "meta" / "esc50.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh)
                if (fold is None or int(r["fold"]) == fold) and (target is None or int(r["target"]) == target)]
    rows.sort(key=lambda r: r["filename"])
    firsts: dict[str, dict] = {}
    for r in rows:
        firsts.setdefault(r["target"], r)
    ordered = list(firsts.values()) + [r for r in rows if r not in firsts.values()]
    paths = [(ESC50_DIR / "audio" / r["filename"]).with_suffix(".flac") for r in ordered]
    return paths[:n] if n is not None else paths


def varied_tiny_explainer():
    """An Explainer on ``tiny:0`` whose (seeded, untrained) decoder gives masks that vary over the clip: an
    untouched random decoder is nearly constant, which would hide stitching and streaming errors."""
    from lmaczs.clap import load_backend
    from lmaczs.decoder import build_decoder
    from lmaczs.explain import Explainer

    backend = load_backend("tiny")
    torch.manual_seed(3)
    decoder = build_decoder(backend, widths=TINY_WIDTHS)
    with torch.no_grad():
        for p in decoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return Explainer(backend, decoder)


def concatenated_clips(folder: Path, n: int, name: str) -> Path:
    """``n`` real ESC-50 clips of different classes (5 s each, 44.1 kHz) end to end in one FLAC file."""
    import numpy as np
    import soundfile as sf

    from lmaczs.audio import read_audio

    path = folder / name
    sf.write(path, np.concatenate([read_audio(p)[0][:, 0] for p in esc50_paths(n)]), 44100)
    return path


@pytest.fixture(scope="session")
def esc50_dir() -> Path:
    """The real ESC-50 folder (skips the test when it is absent)."""
    if not HAVE_ESC50:
        pytest.skip(f"real ESC-50 audio not found at {ESC50_DIR}")
    return ESC50_DIR


@pytest.fixture(scope="session")
def tiny_backend():
    """The seeded tiny random CLAP (``tiny:0``) in the STFT domain. Do not change its domain in tests."""
    from lmaczs.clap import load_backend

    return load_backend("tiny")


@dataclass(frozen=True)
class TinyRun:
    path: Path  # run directory (decoder.safetensors, decoder.json, checkpoint.safetensors, log.jsonl)
    summary: dict  # what train() returned
    config: object  # the TrainConfig


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, esc50_dir) -> TinyRun:
    """A decoder for ``tiny:0`` trained for a few dozen steps on real ESC-50 clips (split A, even classes).

    Treat the directory as read-only; copy it (``shutil.copytree``) to modify it.
    """
    from lmaczs.train import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    # The paper's L_ZS: the random tiny CLAP finds no prompt evidence above silence, so the silence baseline
    # trains its decoder to near-empty masks (mean 0.001 after these 40 steps), too flat for the pipeline tests.
    cfg = TrainConfig(clap="tiny", data=str(esc50_dir), out=str(out), splits=["A"], targets="even",
                      widths=list(TINY_WIDTHS), max_steps=40, batch_size=4, lr=1e-3, val_fraction=0.15,
                      checkpoint_every=20, log_every=10, seed=0, progress=False, baseline="none")
    return TinyRun(out, train(cfg), cfg)
