"""The embedded models as a user gets them: offline, on real recordings neither part heard (split B)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from lmaczs import Explainer, esc50
from lmaczs.cli import main

ESC50 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "esc50"
EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "lmaczs" / "assets" / "examples"
needs_esc50 = pytest.mark.skipif(not ESC50.is_dir(), reason="../shared/data/esc50 is not beside the checkout")


@pytest.fixture(scope="module")
def eval_model() -> Explainer:
    return Explainer.from_pretrained("esc50-eval")


@needs_esc50
def test_esc50_eval_classifies_held_out_clips_and_masks_follow_the_prompt(eval_model: Explainer) -> None:
    clips = esc50.read_esc50(ESC50)
    names = esc50.class_names(clips)
    prompts = [esc50.eval_prompt(n) for n in names]
    held_out = esc50.select(clips, splits=["B"], targets="odd")[::3]  # 32 clips over the 25 odd classes
    rng = random.Random(0)
    right, larger = 0, 0
    for clip in held_out:
        e = eval_model.explain(clip.path, prompts)
        right += e.prediction == esc50.eval_prompt(clip.category)
        unrelated = rng.choice([p for p in prompts if p != e.prediction])
        other = eval_model.explain(clip.path, prompts, target=unrelated)
        larger += e.mask_mean > other.mask_mean
    n = len(held_out)
    assert right / n >= 0.35, f"{right}/{n} right, 50-way (chance 2 %)"
    # "on most clips" (the embedded-model issue); measured 20/32 with the shipped decoder: the prompt
    # selectivity of our decoders is weak (docs/model-card.md, docs/results.md)
    assert larger / n > 0.55, f"mask for the predicted prompt larger than for an unrelated one on {larger}/{n}"


def test_default_model_explains_the_shipped_examples(tmp_path: Path) -> None:
    ex = Explainer.from_pretrained()
    prompts = ["dog barking", "rain", "a crying baby", "church bells"]
    for clip, want in (("dog.flac", "dog barking"), ("rain.flac", "rain"), ("church-bells.flac", "church bells")):
        e = ex.explain(EXAMPLES / clip, prompts)
        assert e.prediction == want
        assert e.audio.shape[0] == e.original.shape[0] and np.isfinite(e.audio).all()
        # the explanation keeps part of the clip, never more energy than the clip itself
        assert 0 < float(np.sum(e.audio ** 2)) < float(np.sum(e.original ** 2)) * 1.01
    assert main(["explain", str(EXAMPLES / "dog.flac"), "-p", "dog barking", "-p", "rain", "--out",
                 str(tmp_path)]) == 0
    assert (tmp_path / "dog.explanation.wav").is_file() and (tmp_path / "dog.png").is_file()


def test_models_load_offline_and_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    ex = Explainer.from_pretrained("esc50-eval")
    assert time.perf_counter() - t0 < 60  # "in seconds" on an idle machine; generous for a loaded CI box
    assert ex.decoder is not None and ex.clap.spec == "esc50-eval"
    with torch.no_grad():
        assert ex.clap.embed_text(["a dog"]).shape[-1] == ex.decoder.config.text_dim
