"""The web demo's callbacks (no browser): scores, figures, players, choices, limits and errors in the page."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import soundfile as sf

from lmaczs.cli import build_parser
from lmaczs.explain import Explainer
from lmaczs.web import NONE, OUTPUT_ORDER, TOP, Demo, baseline_names
from web_fixtures import dog, make_tiny_run, tone  # noqa: F401 (dog is a fixture)

PROMPTS = "dog barking\nrain\n\n  church bells  \n"


@pytest.fixture(scope="module")
def ex(tmp_path_factory):
    return Explainer.load(None, make_tiny_run(tmp_path_factory.mktemp("run")))




def outputs(values) -> dict:
    return dict(zip(OUTPUT_ORDER, values))


def test_run_shows_scores_figures_and_players(ex, dog):
    demo = Demo(ex, examples_dir=None)
    out = outputs(demo.run(str(dog), PROMPTS, TOP, NONE, "gradcam++"))
    assert out["status"].startswith("Explained"), out["status"]
    assert list(out["scores"]) == ["dog barking", "rain", "church bells"]
    assert sum(out["scores"].values()) == pytest.approx(1.0, abs=1e-4)
    top = max(out["scores"], key=out["scores"].get)
    assert f"'{top}'" in out["status"]
    for name in ("original", "explanation", "residual", "baseline_explanation", "baseline_residual"):
        sr, samples = out[name]
        assert sr == ex.clap.sample_rate and samples.dtype == np.int16
        assert len(samples) == 5 * ex.clap.sample_rate  # the whole 5 s clip
    assert np.abs(out["explanation"][1]).max() > 0
    assert not np.array_equal(out["explanation"][1], out["baseline_explanation"][1])
    for name in ("figure", "baseline_figure"):
        assert out[name].width > 600 and out[name].height > 150
    assert "Baseline gradcam++ explains" in out["status"]


def test_target_contrast_and_no_baseline(ex, dog):
    demo = Demo(ex, examples_dir=None)
    res = demo.explain(str(dog), PROMPTS, target="rain", contrast="dog barking", baseline=NONE)
    assert (res.lmac.prediction, res.lmac.contrast) == ("rain", "dog barking")
    assert "'rain' rather than 'dog barking'" in res.status
    assert res.baseline is None and res.baseline_figure is None and res.baseline_explanation is None
    plain = demo.explain(str(dog), PROMPTS, target="rain")
    assert (res.lmac.mask <= plain.lmac.mask + 1e-6).all()
    both = demo.explain(str(dog), PROMPTS, target="rain", contrast="dog barking", baseline="gradcam")
    assert both.baseline.prediction == "rain" and "alone" in both.status


def test_errors_are_one_line_in_the_page(ex, dog, tmp_path, monkeypatch):
    demo = Demo(ex, examples_dir=None, max_seconds=3, max_upload_mb=1)
    long_clip = tmp_path / "long.wav"
    sf.write(long_clip, tone(4.0), 8000)
    big = tmp_path / "big.wav"
    sf.write(big, tone(2.9, 96000), 96000, subtype="FLOAT")  # 1.1 MB, 2.9 s: only the size limit is hit
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    short = tmp_path / "short.wav"
    sf.write(short, tone(1.0), 8000)
    cases = {
        "limit is 3 s": (str(long_clip), PROMPTS, None, None, None),
        "limit is 1 MB": (str(big), PROMPTS, None, None, None),
        "no audio": (None, PROMPTS, None, None, None),
        "cannot read bad.wav": (str(bad), PROMPTS, None, None, None),
        "duplicate prompts": (str(short), "a\na", None, None, None),
        "at least one prompt": (str(short), "\n \n", None, None, None),
        "must differ": (str(short), "a\nb", "a", "a", None),
        "unknown baseline": (str(short), "a\nb", None, None, "nope"),
    }
    for expected, args in cases.items():
        out = outputs(demo.run(*args))
        assert out["status"].startswith("**Error:**") and expected in out["status"], (expected, out["status"])
        assert "\n" not in out["status"] and "Traceback" not in out["status"]
        assert all(out[k] is None for k in OUTPUT_ORDER if k != "status")

    def boom(*a, **k):
        raise RuntimeError("kaput\nline two")

    monkeypatch.setattr(demo.explainer, "explain", boom)
    status = outputs(demo.run(str(short), "a\nb"))["status"]
    assert "Unexpected error" in status and "RuntimeError: kaput" in status and "line two" not in status


def test_choices_follow_the_prompts(ex):
    demo = Demo(ex, examples_dir=None)
    targets, target, contrasts, contrast = demo.choices(PROMPTS, "rain", "church bells")
    assert targets == [TOP, "dog barking", "rain", "church bells"] and contrasts[0] == NONE
    assert (target, contrast) == ("rain", "church bells")
    _, target, _, contrast = demo.choices("dog barking\nsiren", "rain", "church bells")
    assert (target, contrast) == (TOP, NONE)  # selections no longer among the prompts are reset


def test_examples_and_default_prompts(ex, tmp_path):
    (tmp_path / "b.flac").write_bytes(b"")
    (tmp_path / "a.wav").write_bytes(b"")
    (tmp_path / "notes.md").write_text("x")
    demo = Demo(ex, examples_dir=tmp_path)
    assert [p.name for p in demo.examples()] == ["a.wav", "b.flac"]
    assert demo.default_prompts()[0].startswith("this is the sound of")
    (tmp_path / "prompts.txt").write_text("a dog barks\n\nrain falls\n")
    assert demo.default_prompts() == ["a dog barks", "rain falls"]
    assert Demo(ex, examples_dir=tmp_path / "missing").examples() == []


def test_demo_without_baselines_module(ex, dog, monkeypatch):
    monkeypatch.setitem(sys.modules, "lmaczs.baselines", None)  # import fails as if the module were missing
    assert baseline_names() == []
    demo = Demo(ex, examples_dir=None)
    out = outputs(demo.run(str(dog), PROMPTS, TOP, NONE, NONE))
    assert out["status"].startswith("Explained") and out["baseline_figure"] is None
    assert "unknown baseline" in outputs(demo.run(str(dog), PROMPTS, TOP, NONE, "gradcam"))["status"]


def test_build_app_and_cli(ex):
    pytest.importorskip("gradio", reason="the web extra is not installed (pip install -e '.[web]')")
    from lmaczs.web import build_app

    app = build_app(Demo(ex, examples_dir=None))
    ids = {c["props"].get("elem_id") for c in app.get_config_file()["components"]}
    assert {"audio-input", "prompts", "target", "contrast", "baseline", "explain", "scores", "figure",
            "audio-original", "audio-explanation", "audio-residual", "baseline-figure", "status"} <= ids
    args = build_parser().parse_args(["serve", "--clap", "tiny", "--port", "8123"])
    assert (args.host, args.port, args.max_upload_mb, args.max_seconds) == ("127.0.0.1", 8123, 20.0, 60.0)
