"""Top-k and contrastive ("A rather than B") explanations: API and CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmaczs.cli import main
from lmaczs.errors import PromptError
from lmaczs.explain import Explainer
from web_fixtures import dog, make_tiny_run, tone  # noqa: F401 (dog is a fixture)

PROMPTS = ["dog barking", "rain", "church bells", "a cat meowing"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def ex(run_dir):
    return Explainer.load(None, run_dir)




def test_contrast_is_target_mask_times_one_minus_contrast_mask(ex):
    # 2 s at 8 kHz: exactly one tiny window, so no overlap-add between the per-window product and the result.
    wave = tone(2.0)
    a, b = PROMPTS[0], PROMPTS[2]
    ea = ex.explain(wave, PROMPTS, target=a, sample_rate=8000)
    eb = ex.explain(wave, PROMPTS, target=b, sample_rate=8000)
    ec = ex.explain(wave, PROMPTS, target=a, contrast=b, sample_rate=8000)
    assert (ec.prediction, ec.contrast) == (a, b)
    assert ec.scores == ea.scores
    assert not np.allclose(ea.mask, eb.mask, atol=1e-3), "masks should depend on the prompt"
    np.testing.assert_allclose(ec.mask, ea.mask * (1 - eb.mask), atol=1e-6)
    assert (ec.mask <= ea.mask + 1e-7).all()
    assert ec.mask.mean() < ea.mask.mean()
    assert ec.to_dict()["contrast"] == b


def test_contrast_on_a_long_real_clip_stays_below_the_target_mask(ex, dog):
    # 5 s = several overlapping windows: the stitched contrast mask is a weighted mean of per-window masks that
    # are each ≤ the target's, so it stays ≤ the stitched target mask.
    ea = ex.explain(dog, PROMPTS, target=PROMPTS[1])
    ec = ex.explain(dog, PROMPTS, target=PROMPTS[1], contrast=PROMPTS[0])
    assert len(ec.window_scores) > 1
    assert ec.mask.shape == ea.mask.shape
    assert (ec.mask <= ea.mask + 1e-6).all()
    assert ec.mask.mean() < 0.9 * ea.mask.mean()
    assert np.abs(ec.audio).sum() < np.abs(ea.audio).sum()


def test_contrast_errors(ex):
    wave = tone(1.0)
    with pytest.raises(PromptError, match="differ"):
        ex.explain(wave, PROMPTS, target=PROMPTS[0], contrast=PROMPTS[0], sample_rate=8000)
    with pytest.raises(PromptError, match="not among"):
        ex.explain(wave, PROMPTS, contrast="thunder", sample_rate=8000)


def test_topk_order_follows_scores_and_matches_single_explanations(ex, dog):
    es = ex.explain_topk(dog, PROMPTS, k=3)
    ranked = sorted(PROMPTS, key=lambda p: -es[0].scores[p])
    assert [e.prediction for e in es] == ranked[:3]
    assert [e.extra["rank"] for e in es] == [1, 2, 3]
    assert all(e.scores == es[0].scores for e in es)
    assert es[0].scores[es[0].prediction] >= es[1].scores[es[1].prediction] >= es[2].scores[es[2].prediction]
    assert es[0].prediction == ex.explain(dog, PROMPTS).prediction
    for e in es:  # one encoding for all k gives the same masks as k separate explain(target=...) calls
        single = ex.explain(dog, PROMPTS, target=e.prediction)
        np.testing.assert_allclose(e.mask, single.mask, atol=1e-6)
        np.testing.assert_allclose(e.audio, single.audio, atol=1e-5)
    assert not np.allclose(es[0].mask, es[1].mask, atol=1e-3)


def test_topk_bounds(ex):
    wave = tone(1.0)
    assert len(ex.explain_topk(wave, PROMPTS, k=10, sample_rate=8000)) == len(PROMPTS)
    assert len(ex.explain_topk(wave, PROMPTS, k=1, sample_rate=8000)) == 1
    for bad in (0, -1, 1.5):
        with pytest.raises(PromptError, match="k >= 1"):
            ex.explain_topk(wave, PROMPTS, k=bad, sample_rate=8000)


def _prompt_args():
    return [arg for p in PROMPTS for arg in ("-p", p)]


def test_cli_top_k_writes_ranked_files_and_report(run_dir, dog, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["explain", str(dog), *_prompt_args(), "--decoder", str(run_dir), "--out", str(out), "--top-k", "2",
               "--report", str(tmp_path / "report.html")])
    assert rc == 0
    first = json.loads((out / f"{dog.stem}.top1.json").read_text())
    second = json.loads((out / f"{dog.stem}.top2.json").read_text())
    ranked = sorted(first["scores"], key=lambda p: -first["scores"][p])
    assert (first["prediction"], second["prediction"]) == tuple(ranked[:2])
    assert (first["rank"], second["rank"]) == (1, 2)
    for i in (1, 2):
        assert (out / f"{dog.stem}.top{i}.explanation.wav").stat().st_size > 1000
        assert (out / f"{dog.stem}.top{i}.png").is_file()
    assert not (out / f"{dog.stem}.top3.json").exists()
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert html.count('<section id="e') == 2
    assert "top-2" in html


def test_cli_contrast_and_conflicts(run_dir, dog, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["explain", str(dog), *_prompt_args(), "--decoder", str(run_dir), "--out", str(out),
               "--target", PROMPTS[1], "--contrast", PROMPTS[0]])
    assert rc == 0
    meta = json.loads((out / f"{dog.stem}.json").read_text())
    assert (meta["prediction"], meta["contrast"]) == (PROMPTS[1], PROMPTS[0])
    capsys.readouterr()
    rc = main(["explain", str(dog), *_prompt_args(), "--decoder", str(run_dir), "--out", str(out), "--top-k", "2",
               "--contrast", PROMPTS[0]])
    assert rc == 2
    assert "--top-k" in capsys.readouterr().err
