"""Explainer / Explanation with the tiny trained run on real clips: scores, masks, listenable audio, files,
prompt validation and decoder/backend mismatches."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import esc50_paths
from lmaczs.audio import load_audio
from lmaczs.checkpoint import save_decoder
from lmaczs.clap import load_backend
from lmaczs.decoder import DecoderConfig, MaskDecoder
from lmaczs.errors import CheckpointError, PromptError
from lmaczs.explain import Explainer
from lmaczs.windows import window_starts

PROMPTS = ["a dog barks", "rain falls", "a clock ticks", "a siren wails"]


@pytest.fixture(scope="module")
def ex(tiny_run) -> Explainer:
    return Explainer.load(None, tiny_run.path)


@pytest.fixture(scope="module")
def clip():
    return esc50_paths(1)[0]


def test_load_uses_the_trained_backend(ex):
    assert ex.clap.spec == "tiny:0" and ex.clap.domain_name == "stft"
    assert ex.decoder is not None and not ex.decoder.training
    assert ex.decoder.config.mask_shape == ex.clap.mask_shape()


def test_classify_probabilities(ex, clip):
    scores = ex.classify(clip, PROMPTS)
    assert list(scores) == PROMPTS
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert all(0 <= v <= 1 for v in scores.values())
    # each probability belongs to its prompt, whatever the order
    reordered = ex.classify(clip, PROMPTS[::-1])
    assert list(reordered) == PROMPTS[::-1]
    for p in PROMPTS:
        assert reordered[p] == pytest.approx(scores[p], abs=1e-6)
    # by hand: mean over the clip's windows of softmax(logit_scale · cos), each window peak-normalised
    wave = load_audio(clip, 8000)
    starts = window_starts(wave.shape[0], 16000, 128)
    assert len(starts) > 1
    wins = torch.stack([torch.nn.functional.pad(wave, (0, 16000))[s:s + 16000] for s in starts])
    wins = wins / wins.abs().amax(dim=1, keepdim=True)
    with torch.no_grad():
        emb = ex.clap.encode_spec(ex.clap.analyze(wins)[0]).embedding
        probs = torch.softmax(ex.clap.logit_scale * emb @ ex.clap.embed_text(PROMPTS).T, -1).mean(0)
    np.testing.assert_allclose(list(scores.values()), probs.numpy(), atol=1e-6)


def test_explain_real_clip(ex, clip):
    e = ex.explain(clip, PROMPTS)
    n = load_audio(clip, 8000).shape[0]
    assert n == 40000  # 5 s at 8 kHz: longer than one 2 s window
    assert e.scores == pytest.approx(ex.classify(clip, PROMPTS), abs=1e-6)
    assert e.prediction == max(e.scores, key=e.scores.get)
    assert e.sample_rate == 8000
    assert e.mask.shape == (n // 128 + 1, 129) == e.spectrogram.shape
    assert e.mask.min() >= 0 and e.mask.max() <= 1 and 0 < e.mask_mean < 1
    assert e.audio.shape == (n,) and e.residual.shape == (n,) and e.audio.dtype == np.float32
    assert np.isfinite(e.audio).all() and np.abs(e.audio).max() > 0
    assert e.contrast is None and e.source == str(clip)
    np.testing.assert_array_equal(e.original, load_audio(clip, 8000).numpy())  # the input as the model heard it

    other = next(p for p in PROMPTS if p != e.prediction)
    t = ex.explain(clip, PROMPTS, target=other)
    assert t.prediction == other and t.scores == pytest.approx(e.scores)
    assert np.abs(t.mask - e.mask).max() > 1e-4  # another prompt, another mask


def test_contrast_keeps_less_than_the_target_alone(ex, clip):
    target, contrast = PROMPTS[0], PROMPTS[1]
    plain = ex.explain(clip, PROMPTS, target=target)
    c = ex.explain(clip, PROMPTS, target=target, contrast=contrast)
    assert c.contrast == contrast and c.prediction == target
    assert (c.mask <= plain.mask + 1e-6).all() and c.mask_mean < plain.mask_mean


def test_short_clip_and_arrays(ex, clip):
    wave44 = load_audio(clip, 44100).numpy()
    from_array = ex.explain(wave44, PROMPTS, sample_rate=44100)
    from_path = ex.explain(clip, PROMPTS)
    np.testing.assert_allclose(from_array.mask, from_path.mask, atol=1e-6)
    np.testing.assert_allclose(from_array.audio, from_path.audio, atol=1e-6)
    assert from_array.scores == pytest.approx(from_path.scores, abs=1e-6)
    # a 1 s stereo clip (C, N) at 22.05 kHz: shorter than the 2 s window
    short = load_audio(clip, 22050)[:22050].numpy()
    stereo = np.stack([short, 0.5 * short])
    e = ex.explain(stereo, PROMPTS, sample_rate=22050)
    assert e.audio.shape == (8000,) and e.mask.shape == (8000 // 128 + 1, 129)
    assert ex.classify(torch.from_numpy(stereo.T.copy()), PROMPTS, sample_rate=22050) == pytest.approx(e.scores)


def test_all_ones_mask_gives_back_the_input(ex, clip, monkeypatch):
    """The listenable path (peak normalisation, windows, stitching, ISTFT, gain) is lossless for M = 1 and
    silent for M = 0, for a single window and for a multi-window clip."""
    for value in (1.0, 0.0):
        monkeypatch.setattr(ex, "_masks", lambda text, hidden, v=value: torch.full(
            (hidden[0].shape[0], *ex.clap.mask_shape()), v))
        for audio, sr in ((load_audio(clip, 44100).numpy()[:44100], 44100), (str(clip), None)):
            e = ex.explain(audio, PROMPTS, sample_rate=sr)
            wave = load_audio(audio, 8000, sample_rate=sr).numpy()
            np.testing.assert_allclose(e.audio, value * wave, atol=1e-4)
            np.testing.assert_allclose(e.residual, (1 - value) * wave, atol=1e-4)


@pytest.mark.parametrize("kwargs,word", [
    (dict(prompts=[]), "at least one"),
    (dict(prompts=["rain", ""]), "non-empty"),
    (dict(prompts=["rain", "  "]), "non-empty"),
    (dict(prompts=["rain", "dog", "rain"]), "duplicate"),
    (dict(prompts=["rain", "dog"], target="cat"), "target"),
    (dict(prompts=["rain", "dog"], contrast="cat"), "contrast"),
    (dict(prompts=["rain", "dog"], target="rain", contrast="rain"), "contrast"),
])
def test_prompt_errors(ex, clip, kwargs, word):
    with pytest.raises(PromptError, match=word) as e:
        ex.explain(clip, **kwargs)
    assert "\n" not in str(e.value)
    if "target" not in kwargs and "contrast" not in kwargs:
        with pytest.raises(PromptError):
            ex.classify(clip, kwargs["prompts"])


def test_decoder_backend_mismatch(tiny_run, tmp_path):
    # a decoder of another geometry, saved as if for tiny:0
    cfg = DecoderConfig(hidden_shapes=[(64, 108, 48), (128, 54, 24), (256, 27, 12), (512, 27, 12)],
                        mask_shape=(216, 1025), text_dim=32, widths=[8, 8, 8, 8])
    save_decoder(tmp_path / "other", MaskDecoder(cfg), {"backend": {"spec": "tiny:0", "domain": "stft"}})
    with pytest.raises(CheckpointError, match="does not match") as e:
        Explainer.load(None, tmp_path / "other")
    assert "\n" not in str(e.value)
    # the tiny run's decoder with the same backend in the mel domain (mask (126, 32), not (126, 129))
    with pytest.raises(CheckpointError, match="does not match"):
        Explainer(load_backend("tiny", "mel"), Explainer.load(None, tiny_run.path).decoder)
    # another backend with the same shapes is accepted (--clap overrides the trained spec)
    other = Explainer.load("tiny:1", tiny_run.path)
    assert other.clap.spec == "tiny:1" and other.decoder.config == ex_config(tiny_run)


def ex_config(run):
    return Explainer.load(None, run.path).decoder.config


def test_missing_or_corrupt_run_dir(tiny_run, tmp_path):
    with pytest.raises(CheckpointError, match="missing"):
        Explainer.load(None, tmp_path / "nowhere")
    bad_json = tmp_path / "bad_json"
    shutil.copytree(tiny_run.path, bad_json)
    (bad_json / "decoder.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        Explainer.load(None, bad_json)
    bad_weights = tmp_path / "bad_weights"
    shutil.copytree(tiny_run.path, bad_weights)
    (bad_weights / "decoder.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="cannot load"):
        Explainer.load(None, bad_weights)
    with pytest.raises(CheckpointError, match="no decoder"):
        Explainer(load_backend("tiny")).explain(esc50_paths(1)[0], ["rain"])


def test_save_writes_wav_png_json(ex, clip, tmp_path):
    e = ex.explain(clip, PROMPTS)
    paths = e.save(tmp_path / "out")
    stem = clip.stem
    assert paths == {"wav": tmp_path / "out" / f"{stem}.explanation.wav",
                     "png": tmp_path / "out" / f"{stem}.png", "json": tmp_path / "out" / f"{stem}.json"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths.values())
    audio, sr = sf.read(paths["wav"], dtype="float32")
    assert sr == 8000 and audio.shape == e.audio.shape
    peak = max(1.0, float(np.abs(e.audio).max()))
    np.testing.assert_allclose(audio, e.audio / peak, atol=1e-6)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads(paths["json"].read_text())
    assert info["scores"] == pytest.approx(e.scores) and list(info["scores"]) == PROMPTS
    assert info["prediction"] == e.prediction
    assert info["mask_mean"] == pytest.approx(float(e.mask.mean()))
    assert info["backend"]["spec"] == "tiny:0" and info["backend"]["mask_shape"] == [126, 129]
    assert {"lmaczs", "torch", "transformers", "python"} <= set(info["versions"])
    assert info["sample_rate"] == 8000 and info["duration_s"] == pytest.approx(5.0)
    # arrays get a neutral stem
    a = ex.explain(load_audio(clip, 8000).numpy(), PROMPTS, sample_rate=8000).save(tmp_path / "arr")
    assert a["wav"].name == "audio.explanation.wav"


def test_explanation_is_deterministic(ex, clip):
    a, b = ex.explain(clip, PROMPTS), ex.explain(clip, PROMPTS)
    assert np.array_equal(a.mask, b.mask) and np.array_equal(a.audio, b.audio)
