"""The web demo's callbacks (no browser): scores, figures, players, choices, limits and errors in the page."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lmaczs.cli import build_parser
from lmaczs.explain import Explainer
from lmaczs.errors import AudioError
from lmaczs.web import (MAX_TOPK, NONE, OUTPUT_ORDER, TOP, TOPK_ORDER, AnswerFiles, Demo, baseline_names,
                        parse_top_k, public_message)
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
    config = app.get_config_file()
    ids = {c["props"].get("elem_id") for c in config["components"]}
    assert {"audio-input", "prompts", "target", "contrast", "baseline", "explain", "scores", "figure",
            "audio-original", "audio-explanation", "audio-residual", "baseline-figure", "status", "topk",
            "topk-heading"} <= ids
    for i in range(1, MAX_TOPK + 1):
        assert {f"topk-{i}", f"topk-title-{i}", f"topk-figure-{i}", f"topk-audio-{i}"} <= ids
    triggers = {t[1] for dep in config["dependencies"] for t in dep["targets"]}
    assert {"click", "change", "unload"} <= triggers  # the session's files are removed when its tab closes
    args = build_parser().parse_args(["serve", "--clap", "tiny", "--port", "8123"])
    assert (args.host, args.port, args.max_upload_mb, args.max_seconds) == ("127.0.0.1", 8123, 20.0, 60.0)


# -- top-k ----------------------------------------------------------------------------------------
def test_topk_view_one_explanation_per_top_prompt(ex, dog):
    demo = Demo(ex, examples_dir=None)
    res = demo.explain(str(dog), PROMPTS + "\nsiren\n", baseline=NONE, top_k=3)
    ranked = sorted(res.scores, key=res.scores.get, reverse=True)
    assert [t.rank for t in res.topk] == [1, 2, 3]
    assert [t.lmac.prediction for t in res.topk] == ranked[:3]
    for t in res.topk:
        assert f"'{t.lmac.prediction}'" in t.title and f"#{t.rank}" in t.title
        assert t.figure.width > 600 and t.figure.height > 150
        sr, samples = t.explanation
        assert sr == ex.clap.sample_rate and samples.dtype == np.int16 and len(samples) == 5 * sr
    assert not np.array_equal(res.topk[0].lmac.mask, res.topk[1].lmac.mask)  # each prompt its own mask
    assert "Top-3: " + ", ".join(f"'{p}'" for p in ranked[:3]) in res.status
    # the page's values: the main ones, then (title, figure, explanation) for every slot, None when unused
    values = demo.run(str(dog), PROMPTS, TOP, NONE, NONE, 2.0)  # sliders send floats
    assert len(values) == len(OUTPUT_ORDER) + MAX_TOPK * len(TOPK_ORDER)
    slots = [values[len(OUTPUT_ORDER) + i * 3: len(OUTPUT_ORDER) + i * 3 + 3] for i in range(MAX_TOPK)]
    assert all(v is not None for s in slots[:2] for v in s) and all(v is None for s in slots[2:] for v in s)
    # off by default, and k above the number of prompts explains them all
    assert demo.explain(str(dog), PROMPTS).topk == []
    everything = demo.explain(str(dog), PROMPTS, top_k=MAX_TOPK)
    assert len(everything.topk) == 3 and "(all 3 prompts)" in everything.status


def test_topk_control_is_checked(ex, tmp_path):
    demo = Demo(ex, examples_dir=None)
    clip = tmp_path / "clip.wav"
    sf.write(clip, tone(1.0), 8000)
    assert parse_top_k(None) == parse_top_k("") == parse_top_k(0) == 0 and parse_top_k(3.0) == 3
    for bad in (-1, 2.5, MAX_TOPK + 1, "many", True):
        status = outputs(demo.run(str(clip), PROMPTS, None, None, None, bad))["status"]
        assert status.startswith("**Error:**") and "top-k must be a whole number" in status, (bad, status)


# -- no server paths in the page ------------------------------------------------------------------------
def test_public_message_keeps_only_base_names(tmp_path):
    upload = tmp_path / "gradio" / "0a1b2c" / "my dog clip.wav"
    msg = f"cannot read audio file {upload}: Error opening '{upload}': Format not recognised.\nline two"
    assert public_message(msg, [upload]) == ("cannot read audio file my dog clip.wav: Error opening "
                                             "'my dog clip.wav': Format not recognised.")
    assert public_message("failed in /srv/models/x/decoder.safetensors, see /var/log") == \
        "failed in decoder.safetensors, see log"
    assert public_message(r"bad C:\Users\me\AppData\Local\Temp\gradio\x.wav file") == "bad x.wav file"
    assert public_message("prompts ['rock/pop', 'a / b'] differ") == "prompts ['rock/pop', 'a / b'] differ"


def test_errors_show_no_server_paths(ex, tmp_path, monkeypatch):
    demo = Demo(ex, examples_dir=None)
    private = tmp_path / "server-temp" / "f00ba4"
    private.mkdir(parents=True)
    silent = private / "silent.wav"
    sf.write(silent, np.zeros(8000, dtype=np.float32), 8000)
    status = outputs(demo.run(str(silent), PROMPTS))["status"]
    assert status.startswith("**Error:**") and "silent.wav: audio is silent" in status, status
    assert str(tmp_path) not in status and "f00ba4" not in status
    clip = private / "clip.wav"
    sf.write(clip, tone(1.0), 8000)

    def leaky(audio, *a, **k):
        raise RuntimeError(f"cannot decode {clip.resolve()} (cache {private})")

    monkeypatch.setattr(demo.explainer, "explain", leaky)
    status = outputs(demo.run(str(clip), PROMPTS))["status"]
    assert "Unexpected error" in status and "clip.wav" in status, status
    assert str(tmp_path) not in status and "server-temp" not in status
    monkeypatch.setattr(demo.explainer, "explain", lambda *a, **k: (_ for _ in ()).throw(
        AudioError(f"{clip}: audio is empty")))
    status = outputs(demo.run(str(clip), PROMPTS))["status"]
    assert status == "**Error:** clip.wav: audio is empty", status


# -- files the page serves: one folder per answer, removed per session -------------------------------
def _upload(cache: Path, name: str, seconds: float, digest: str) -> Path:
    """A file where gradio puts an upload: ``<cache>/<hash>/<name>``."""
    (cache / digest).mkdir(parents=True, exist_ok=True)
    path = cache / digest / name
    sf.write(path, tone(seconds), 8000)
    return path


def _served(result) -> list[Path]:
    files = [getattr(result, n) for n in ("figure", "original", "explanation", "residual", "baseline_figure",
                                          "baseline_explanation", "baseline_residual")]
    files += [f for t in result.topk for f in (t.figure, t.explanation)]
    return [Path(f) for f in files if f is not None]


def test_answers_are_files_removed_per_session(ex, tmp_path):
    cache = tmp_path / "gradio"
    files = AnswerFiles(cache)
    demo = Demo(ex, examples_dir=None, files=files)
    a = _upload(cache, "a dog.wav", 1.0, "hash-a")
    first = demo.answer(str(a), PROMPTS, baseline="gradcam", top_k=2, session="s1")
    assert first.status.startswith("Explained"), first.status
    served = _served(first)
    assert len(served) == 7 + 4 and len({p.parent for p in served}) == 1
    folder = served[0].parent
    assert folder.parent == files.root and files.root.parent == cache.resolve()  # inside gradio's cache
    assert {p.name for p in served} >= {"a_dog.explanation.wav", "a_dog.lmac-zs.png", "a_dog.top2.png",
                                        "a_dog.gradcam.residual.wav"}
    samples, sr = sf.read(first.explanation)
    assert sr == ex.clap.sample_rate and len(samples) == sr  # the 1 s clip at the model's rate
    assert np.allclose(samples, _players_of(first.lmac)["explanation"][1] / 32768, atol=1e-4)

    second = demo.answer(str(a), PROMPTS, session="s1")  # same session, same upload: the old answer goes
    assert not folder.exists() and all(p.is_file() for p in _served(second)) and a.is_file()
    other = demo.answer(str(a), PROMPTS, session="s2")  # another tab shows the same upload
    b = _upload(cache, "b.wav", 1.0, "hash-b")
    demo.answer(str(b), PROMPTS, session="s1")  # s1 moves on to b: a is still shown by s2
    assert a.is_file() and not Path(second.explanation).exists()
    error = demo.answer(str(b), "x\nx", session="s1")  # an error clears the page: its files go too
    assert error.status.startswith("**Error:**") and len(list(files.root.iterdir())) == 1
    files.end_session("s2")
    assert not a.exists() and not (cache / "hash-a").exists() and not Path(other.explanation).exists()
    files.end_session("s1")
    assert not b.exists() and list(files.root.iterdir()) == []
    # an answer that finishes after its tab closed is not kept
    c = _upload(cache, "c.wav", 1.0, "hash-c")
    late = demo.answer(str(c), PROMPTS, session="s1")
    assert not Path(late.explanation).exists() and not c.exists()
    # no session (an API call): the upload goes at once, the answer stays for the age sweep
    d = _upload(cache, "d.wav", 1.0, "hash-d")
    api = demo.answer(str(d), PROMPTS, session=None)
    assert Path(api.explanation).is_file() and not d.exists()
    files.max_age_s = 0.0
    time.sleep(0.05)
    files.sweep()
    assert not Path(api.explanation).exists()
    root = files.root
    files.close()
    assert not root.exists() and cache.is_dir()


def _players_of(e):
    from lmaczs.web import _players

    return _players(e)


def test_answer_files_never_remove_user_or_example_files(ex, tmp_path):
    cache = tmp_path / "gradio"
    examples = tmp_path / "examples"
    examples.mkdir()
    example = examples / "rain.wav"
    sf.write(example, tone(1.0), 8000)
    cached_example = cache / "hash-ex" / "rain.wav"  # gradio's copy of the example, shared by all sessions
    cached_example.parent.mkdir(parents=True)
    shutil.copy(example, cached_example)
    own = tmp_path / "home" / "mine.wav"  # a file outside gradio's cache (Demo used from Python)
    own.parent.mkdir()
    sf.write(own, tone(1.2), 8000)
    files = AnswerFiles(cache, protect=[example])
    demo = Demo(ex, examples_dir=examples, files=files)
    for i, path in enumerate((example, cached_example, own)):
        assert demo.answer(str(path), PROMPTS, session=f"s{i}").status.startswith("Explained")
    for i in range(3):
        files.end_session(f"s{i}")
    demo.answer(str(own), PROMPTS, session=None)
    files.close()
    assert example.is_file() and cached_example.is_file() and own.is_file()
    # a Demo without files set makes its own in gradio's cache on first answer
    assert Demo(ex, examples_dir=None).files is None
