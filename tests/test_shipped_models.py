"""The embedded models as a user gets them: offline, on real recordings neither part heard (split B)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lmaczs import Explainer
from lmaczs import datasets
from lmaczs.audio import load_audio
from lmaczs.cli import main

ESC50 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "esc50"
EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "lmaczs" / "assets" / "examples"
needs_esc50 = pytest.mark.skipif(not ESC50.is_dir(), reason="../shared/data/esc50 is not beside the checkout")


@pytest.fixture(scope="module")
def eval_model() -> Explainer:
    return Explainer.from_pretrained("esc50-eval")


@needs_esc50
def test_esc50_eval_on_held_out_clips(eval_model: Explainer) -> None:
    """Far above chance; explanations keep the prediction (the masked clip stays close to the prompt); and they
    follow the prompt: on most clips the predicted prompt's mask is larger than an unrelated prompt's."""
    clips = datasets.read_esc50(ESC50)
    prompts = [datasets.eval_prompt(n) for n in datasets.class_names(clips)]
    held_out = datasets.select(clips, splits=["B"], targets="odd")[::3]  # 32 clips over the 25 odd classes
    clap, text = eval_model.clap, eval_model.clap.embed_text(prompts)
    right, kept, clean, differs, larger = 0, [], [], 0, 0
    for clip in held_out:
        e = eval_model.explain(clip.path, prompts)
        right += e.prediction == datasets.eval_prompt(clip.category)
        c = prompts.index(e.prediction)
        x = torch.from_numpy(e.spectrogram)[None]
        with torch.no_grad():
            clean.append(float(clap.encode_spec(x).embedding[0] @ text[c]))
            kept.append(float(clap.encode_spec(torch.from_numpy(e.mask)[None] * x).embedding[0] @ text[c]))
        other = eval_model.explain(clip.path, prompts, target=prompts[(c + 25) % 50])
        differs += float(np.abs(e.mask - other.mask).mean()) > 1e-3
        larger += e.mask_mean > other.mask_mean
        assert 0.02 < e.mask_mean < 0.9
    n = len(held_out)
    assert right / n >= 0.35, f"{right}/{n} right, 50-way (chance 2 %)"
    assert np.mean(kept) > 0.7 * np.mean(clean), f"masked similarity {np.mean(kept):.3f} vs {np.mean(clean):.3f}"
    assert differs == n, "the mask must depend on the prompt"
    assert larger > n / 2, f"predicted prompt's mask larger than an unrelated prompt's on only {larger}/{n} clips"


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


@needs_esc50
def test_esc50_eval_keeps_the_prompted_half_of_a_held_out_splice(eval_model: Explainer) -> None:
    """Known answer: two held-out recordings of different classes side by side at equal loudness; the mask for one
    clip's class prompt puts most of its energy on that clip's half (chance 0.5), whichever half it is in, and an
    unrelated prompt gets a smaller mask than the true one."""
    from lmaczs.evaluation.localization import energy_share, region_frames, splice

    clap = eval_model.clap
    clips = datasets.select(datasets.read_esc50(ESC50), splits=["B"])[::24][:8]
    waves = [clap.fit_window(load_audio(c.path, clap.sample_rate)) for c in clips]
    hop = clap.front.stft.hop_length
    shares, smaller = [], 0
    for k, clip in enumerate(clips):
        partner = next(j % len(clips) for j in range(k + 1, k + len(clips)) if clips[j % len(clips)].category !=
                       clip.category)
        sp = splice(waves[k], waves[partner], clap.num_samples, k % 2 == 0, hop)
        text = clap.embed_text([datasets.eval_prompt(clip.category), "this is the sound of a vacuum cleaner"
                                if clip.category != "vacuum_cleaner" else "this is the sound of a rooster"])
        with torch.no_grad():
            x, _ = clap.analyze(clap.prepare(sp.wave[None]))
            enc = clap.encode_spec(x)
            masks = eval_model.decoder(text, [h.expand(2, -1, -1, -1) for h in enc.hidden])
        shares.append(float(energy_share(masks[:1], region_frames(sp.span, x.shape[1], hop)[None])[0]))
        smaller += float(masks[1].mean()) < float(masks[0].mean())
    assert np.mean(shares) > 0.75, shares
    assert smaller >= 6, f"the unrelated prompt's mask was smaller on only {smaller}/8 splices"

