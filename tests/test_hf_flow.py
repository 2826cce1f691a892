"""The whole flow through the hf: backend: train a decoder on real clips, then explain with it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hf_fixtures import make_tiny_hf_clap
from lmaczs.cli import main
from lmaczs.explain import Explainer
from lmaczs.train import TrainConfig, train

ESC50 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "esc50"
pytestmark = pytest.mark.skipif(not ESC50.is_dir(), reason="../shared/data/esc50 is not beside the checkout")


def test_train_then_explain_through_hf_backend(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = make_tiny_hf_clap(tmp_path / "clap")
    clips = sorted((ESC50 / "audio").glob("4-*.flac"))[:6]
    captions = tmp_path / "captions.csv"
    with captions.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "caption"])
        for k, clip in enumerate(clips):
            w.writerow([str(clip), f"sound number {k} of a test"])
    run = tmp_path / "run"
    summary = train(TrainConfig(clap=f"hf:{ckpt}", data=str(captions), out=str(run), batch_size=2, max_steps=3,
                                epochs=1, val_fraction=0.34, widths=[8, 8, 8, 8], progress=False))
    assert summary["steps"] == 2  # one epoch of 4 training clips at batch 2 is 2 steps, below max_steps
    assert (run / "decoder.safetensors").is_file() and (run / "checkpoint.safetensors").is_file()

    ex = Explainer.load(None, run)
    assert ex.clap.spec == f"hf:{ckpt}"
    wave, sr = sf.read(clips[0])
    e = ex.explain(wave[: sr * 3], ["a dog", "rain"], sample_rate=sr)
    assert e.sample_rate == 48000 and e.audio.shape == (48000 * 3,)
    assert e.mask.shape[1] == 513 and 0.0 <= e.mask.min() and e.mask.max() <= 1.0
    assert abs(sum(e.scores.values()) - 1.0) < 1e-5
    assert np.isfinite(e.audio).all()

    rc = main(["explain", str(clips[1]), "-p", "a dog", "-p", "rain", "--decoder", str(run),
               "--out", str(tmp_path / "out")])
    assert rc == 0
    assert (tmp_path / "out" / f"{clips[1].stem}.explanation.wav").is_file()
