"""The ``hf:`` backend (transformers.ClapModel): front-end and probability parity with the transformers reference,
HTSAT unfolding, masking domains, loading errors. Uses tiny random checkpoints (tests/hf_fixtures.py), no download.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_fixtures import make_tiny_hf_clap, tiny_hf_dir, tiny_hf_fused_dir  # noqa: F401  (pytest fixtures)
from lmaczs.audio import load_audio
from lmaczs.clap import load_backend
from lmaczs.clap.hf import HfClap, extractor_settings, unfold_htsat
from lmaczs.errors import BackendError, PromptError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ESC50 = DATA / "esc50" / "audio"
needs_esc50 = pytest.mark.skipif(not ESC50.is_dir(), reason=f"real ESC-50 clips not found at {ESC50}")
SR = 48000
PROMPTS = ["This is a sound of dog.", "This is a sound of rain.", "This is a sound of crying baby.",
           "This is a sound of door knock.", "This is a sound of helicopter."]


def esc50_clips(n: int) -> list[np.ndarray]:
    """``n`` real clips spread over the sorted file list, mono float32 at 48 kHz (5 s → 240 000 samples)."""
    files = sorted(ESC50.glob("*.flac"))
    step = max(1, len(files) // n)
    return [load_audio(f, SR).numpy() for f in files[::step][:n]]


@pytest.fixture(scope="module")
def backend(tiny_hf_dir):  # noqa: F811
    return HfClap.from_pretrained(str(tiny_hf_dir))


@pytest.fixture(scope="module")
def fused_backend(tiny_hf_fused_dir):  # noqa: F811
    return HfClap.from_pretrained(str(tiny_hf_fused_dir))


def extractor(path: Path):
    from transformers import ClapFeatureExtractor

    return ClapFeatureExtractor.from_pretrained(str(path))


def ours(backend: HfClap, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return backend.front(backend.fit_window(torch.from_numpy(x))[None])[0].numpy()


def reference(fe, x: np.ndarray) -> np.ndarray:
    """The extractor's first (global) channel, ``(T, n_mels)``; frame count checked (see the 512-sample trap)."""
    feats = fe(x, sampling_rate=SR, return_tensors="np")["input_features"][0, 0]
    assert feats.shape == (1001, 64)
    return feats


# -- front end ------------------------------------------------------------------------------------
def test_front_end_matches_extractor_on_random_audio(backend, tiny_hf_dir):  # noqa: F811
    fe = extractor(tiny_hf_dir)
    rng = np.random.default_rng(0)
    for n in (int(0.7 * SR) + 3, int(3.3 * SR) + 17, 10 * SR):  # many repeats, repeats + zero tail, exact
        x = (0.1 * rng.standard_normal(n)).astype(np.float32)
        got, want = ours(backend, x), reference(fe, x)
        assert got.shape == want.shape == (1001, 64)
        assert np.abs(got - want).max() <= 1e-4
    # longer than the window: the extractor crops at random, we keep the start (compare with that crop)
    x = (0.1 * rng.standard_normal(12 * SR)).astype(np.float32)
    assert torch.equal(backend.fit_window(torch.from_numpy(x)), torch.from_numpy(x[: 10 * SR]))
    assert np.abs(ours(backend, x) - reference(fe, x[: 10 * SR])).max() <= 1e-4


def test_repeatpad_window_rule(backend):
    wave = torch.arange(1, 200001, dtype=torch.float32)  # 200 000 samples: 2 whole repeats + 80 000 zeros
    out = backend.fit_window(wave)
    assert backend.padding == "repeatpad" and backend.pad_mode == "repeat"
    assert out.shape == (480000,)
    assert torch.equal(out[200000:400000], wave) and torch.all(out[400000:] == 0)


@needs_esc50
def test_front_end_matches_extractor_on_esc50(backend, tiny_hf_dir):  # noqa: F811
    fe = extractor(tiny_hf_dir)
    errors = [np.abs(ours(backend, x) - reference(fe, x)).max() for x in esc50_clips(10)]
    assert max(errors) <= 1e-4, errors  # measured ≤ 7.7e-6 dB (float32 rounding of −40…−90 dB values)


@needs_esc50
def test_fused_front_end_uses_the_htk_bank(fused_backend, tiny_hf_fused_dir):  # noqa: F811
    fe = extractor(tiny_hf_fused_dir)
    assert fe.truncation == "fusion"
    rng = np.random.default_rng(1)
    clips = esc50_clips(3) + [(0.1 * rng.standard_normal(int(2.5 * SR))).astype(np.float32)]
    for x in clips:
        out = fe(x, sampling_rate=SR, return_tensors="np")["input_features"][0]
        assert out.shape == (4, 1001, 64) and np.array_equal(out[0], out[3])  # short clip: 4 identical copies
        assert np.abs(ours(fused_backend, x) - out[0]).max() <= 1e-4


# -- zero-shot probabilities ----------------------------------------------------------------------
def reference_probs(path: Path, clips: list[np.ndarray], prompts: list[str], fused: bool) -> torch.Tensor:
    """The transformers pipeline: extractor and tokenizer called apart (ClapProcessor crops audio to 512
    samples in transformers 5.x), ClapModel(...).logits_per_audio, softmax."""
    from transformers import AutoTokenizer, ClapModel

    model = ClapModel.from_pretrained(str(path)).eval()
    feats = extractor(path)(clips, sampling_rate=SR, return_tensors="pt")
    assert feats["input_features"].shape == (len(clips), 4 if fused else 1, 1001, 64)
    tokens = AutoTokenizer.from_pretrained(str(path))(prompts, padding=True, return_tensors="pt")
    is_longer = torch.zeros(len(clips), 1, dtype=torch.bool) if fused else None  # fused: see hf.py docstring
    with torch.no_grad():
        out = model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
                    input_features=feats["input_features"], is_longer=is_longer)
    return out.logits_per_audio.softmax(dim=-1)


def backend_probs(backend: HfClap, clips: list[np.ndarray], prompts: list[str]) -> torch.Tensor:
    with torch.no_grad():
        wave = torch.stack([backend.fit_window(torch.from_numpy(x)) for x in clips])
        emb = backend.encode_features(backend.front(wave)).embedding
        return (backend.logit_scale * emb @ backend.embed_text(prompts).T).softmax(dim=-1)


@needs_esc50
@pytest.mark.parametrize("fused", [False, True], ids=["rand_trunc", "fusion"])
def test_probabilities_match_transformers(fused, request):
    name = "fused_backend" if fused else "backend"
    backend = request.getfixturevalue(name)
    path = request.getfixturevalue("tiny_hf_fused_dir" if fused else "tiny_hf_dir")
    clips = esc50_clips(4)
    got, want = backend_probs(backend, clips, PROMPTS), reference_probs(path, clips, PROMPTS, fused)
    assert got.shape == want.shape == (4, len(PROMPTS))
    assert (got - want).abs().max() <= 1e-3  # measured ~1e-6
    assert want.max() > 1.5 / len(PROMPTS)  # far from uniform, and clip-dependent: the comparison can fail
    assert (want - want.mean(dim=0)).abs().max() > 0.05


def test_text_and_scale(backend):
    t = backend.embed_text(PROMPTS)
    assert t.shape == (5, 16) and torch.allclose(t.norm(dim=-1), torch.ones(5), atol=1e-5)
    assert torch.allclose(backend.embed_text(PROMPTS[:1]), t[:1], atol=1e-5)  # padding does not change it
    assert float(backend.logit_scale) == pytest.approx(30.0, rel=1e-5)
    assert not backend.logit_scale.requires_grad
    with pytest.raises(PromptError):
        backend.embed_text([])


# -- HTSAT unfolding ------------------------------------------------------------------------------
def test_unfold_inverts_htsat_folding_exactly(backend):
    """Positions (t, f) → HTSAT's own reshape_mel2img → unfold_htsat gives the positions back, and stays right
    at every stage's resolution (patch embedding / merging pool non-overlapping squares of the image)."""
    enc = backend.model.audio_model.audio_encoder
    t = torch.arange(1024, dtype=torch.float64)[:, None].expand(1024, 64)
    f = torch.arange(64, dtype=torch.float64)[None, :].expand(1024, 64)
    pos = torch.stack([t, f])[None]  # (1, 2, T=1024, F=64): channel 0 time index, channel 1 mel index
    image = enc.reshape_mel2img(pos)
    assert image.shape == (1, 2, 256, 256)
    assert torch.equal(unfold_htsat(image, 4), pos)
    for s in (4, 8, 16, 32):  # stage k of the tiny (and LAION) model: image pooled by 4·2^k
        pooled = unfold_htsat(torch.nn.functional.avg_pool2d(image, s), 4)
        assert torch.equal(pooled, torch.nn.functional.avg_pool2d(pos, s))


def test_hidden_shapes_and_deepest_matches_hf_unfolding(backend):
    assert backend.hidden_shapes() == [(8, 256, 16), (16, 128, 8), (32, 64, 4), (64, 32, 2)]
    enc = backend.model.audio_model.audio_encoder
    x = torch.randn(2, 1, 1001, 64) * 10 - 40
    with torch.no_grad():
        out = enc(x, output_hidden_states=True, output_hidden_states_before_downsampling=True, return_dict=True)
        last = enc.norm(out.hidden_states[-1].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        # HF unfolds its final map itself (for pooling) as (B, C, F, T): ours must agree
        assert torch.allclose(unfold_htsat(last, 4), out.last_hidden_state.transpose(-1, -2), atol=1e-6)
        assert torch.allclose(unfold_htsat(out.hidden_states[2], 4), backend.encode_features(x[:, 0]).hidden[1])


@pytest.mark.parametrize("lo,hi", [(0, 300), (400, 550), (700, 1001)])
def test_hidden_activity_follows_time(backend, lo, hi):
    """Energy only in frames [lo, hi) moves ≥ 90 % of every stage's activity change into those frames, in
    order (the middle case straddles a fold boundary: chunk 1 | chunk 2)."""
    base = torch.full((1, 1001, 64), -60.0)
    x = base.clone()
    x[:, lo:hi] += 40.0
    with torch.no_grad():
        h0, h1 = backend.encode_features(base).hidden, backend.encode_features(x).hidden
    for a, b in zip(h0, h1):
        d = (b - a).pow(2).sum(dim=(0, 1, 3))  # (T_k,)
        tk = d.shape[0]
        inside = d[int(lo * tk / 1001): -(-hi * tk // 1001)].sum() / d.sum()
        assert inside >= 0.9, (tk, float(inside))


def test_hidden_activity_follows_frequency(backend):
    base = torch.full((1, 1001, 64), -60.0)
    x = base.clone()
    x[:, :, 48:] += 40.0  # top quarter of the mel bins
    with torch.no_grad():
        h0, h1 = backend.encode_features(base).hidden, backend.encode_features(x).hidden
    for a, b in zip(h0, h1):
        d = (b - a).pow(2).sum(dim=(0, 1, 2))  # (F_k,)
        fk = d.shape[0]
        assert d[fk // 2:].sum() / d.sum() >= 0.9  # the upper half of frequency, not the lower


# -- masking domains ------------------------------------------------------------------------------
@pytest.mark.parametrize("domain", ["stft", "mel"])
def test_domains(tiny_hf_dir, domain):  # noqa: F811
    backend = load_backend(f"hf:{tiny_hf_dir}", domain=domain)
    assert isinstance(backend, HfClap) and backend.domain_name == domain
    wave = backend.fit_window(0.1 * torch.randn(2, int(4.2 * SR), generator=torch.Generator().manual_seed(3)))
    x, stft = backend.analyze(wave)
    assert tuple(x.shape[1:]) == backend.mask_shape() == (1001, 513 if domain == "stft" else 64)
    with torch.no_grad():
        a, b = backend.encode_spec(x), backend.encode_features(backend.front(wave))
    assert torch.allclose(a.embedding, b.embedding, atol=1e-5)
    for ha, hb in zip(a.hidden, b.hidden):
        assert torch.allclose(ha, hb, atol=1e-4, rtol=1e-4)
    x = x.detach().requires_grad_(True)
    score = backend.encode_spec(x).embedding @ backend.embed_text(PROMPTS[:2]).T
    score[:, 0].sum().backward()
    grad = x.grad
    assert grad is not None and torch.isfinite(grad).all()
    if domain == "stft":  # bins inside the mel range (50 Hz .. 14 kHz) get gradient, bins above it none
        hz = torch.linspace(0, SR / 2, 513)
        band = (hz > 100) & (hz < 13500)
        assert (grad[..., band] != 0).float().mean() > 0.5 and torch.all(grad[..., hz > 14100] == 0)
    else:
        assert (grad != 0).float().mean() > 0.5


# -- loading --------------------------------------------------------------------------------------
def test_loading_errors(tmp_path, tiny_hf_dir):  # noqa: F811
    with pytest.raises(BackendError, match="cache"):
        HfClap.from_pretrained(str(tmp_path / "missing"))
    with pytest.raises(BackendError, match="cache"):
        HfClap.from_pretrained("laion/surely-not-cached", cache_dir=tmp_path)
    with pytest.raises(BackendError):
        load_backend("hf:")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_hf_dir, broken)
    (broken / "preprocessor_config.json").unlink()
    with pytest.raises(BackendError, match="preprocessor_config.json"):
        HfClap.from_pretrained(str(broken))
    (broken / "model.safetensors").write_bytes(b"not weights")
    shutil.copy(tiny_hf_dir / "preprocessor_config.json", broken)
    with pytest.raises(BackendError, match="cannot load"):
        HfClap.from_pretrained(str(broken))


def test_hub_id_from_local_cache(tmp_path, tiny_hf_dir, backend):  # noqa: F811
    """A hub id resolves offline to its snapshot in the Hugging Face cache layout."""
    repo = tmp_path / "models--someone--tiny-clap"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_hf_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    b = HfClap.from_pretrained("someone/tiny-clap", cache_dir=tmp_path)
    assert b.spec == "hf:someone/tiny-clap"
    t = ["a dog"]
    assert torch.allclose(b.embed_text(t), backend.embed_text(t))
    assert backend.spec == f"hf:{Path(tiny_hf_dir).resolve()}"


def test_backend_is_frozen(backend):
    backend.train()
    assert not backend.training and not backend.model.training
    assert not any(p.requires_grad for p in backend.parameters())
    assert backend.describe()["num_samples"] == 480000


# -- checkpoint layouts: transformers 5.x processor_config.json, 4.x preprocessor_config.json ------------------
def transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


@pytest.fixture(scope="module")
def processor_dir(tmp_path_factory):
    """Saved by ``ClapProcessor(...).save_pretrained`` with the installed transformers (same weights as
    ``tiny_hf_dir``)."""
    return make_tiny_hf_clap(tmp_path_factory.mktemp("tiny_hf_processor"), layout="processor")


@pytest.fixture(scope="module")
def v4_dir(tmp_path_factory):
    """The files transformers 4.x wrote (flat preprocessor_config.json, slow tokenizer files)."""
    return make_tiny_hf_clap(tmp_path_factory.mktemp("tiny_hf_v4"), layout="v4")


def assert_same_backend(got: HfClap, want: HfClap, path: Path) -> None:
    """Same window, front end, text and probabilities as ``want``, and front-end parity with the extractor that
    ``ClapFeatureExtractor.from_pretrained`` reads from ``path``."""
    assert (got.sample_rate, got.num_samples, got.padding, got.fused) == (want.sample_rate, want.num_samples,
                                                                        want.padding, want.fused)
    assert torch.allclose(got.embed_text(PROMPTS), want.embed_text(PROMPTS), atol=1e-6)
    rng = np.random.default_rng(5)
    clips = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (int(2.2 * SR), 10 * SR)]
    for x in clips:
        assert np.array_equal(ours(got, x), ours(want, x))
        assert np.abs(ours(got, x) - reference(extractor(path), x)).max() <= 1e-4
    assert torch.allclose(backend_probs(got, clips, PROMPTS), backend_probs(want, clips, PROMPTS), atol=1e-6)


def test_checkpoint_saved_by_clap_processor(processor_dir, backend):
    files = {p.name for p in processor_dir.iterdir()}
    if transformers_major() >= 5:  # the layout that used to be refused
        assert "processor_config.json" in files and "preprocessor_config.json" not in files, files
        nested = json.loads((processor_dir / "processor_config.json").read_text())
        assert nested["feature_extractor"]["feature_size"] == 64
        assert extractor_settings(processor_dir, "x")[1] == "processor_config.json ('feature_extractor')"
    b = HfClap.from_pretrained(str(processor_dir))
    assert_same_backend(b, backend, processor_dir)


def test_checkpoint_written_as_transformers_4(v4_dir, backend):
    files = {p.name for p in v4_dir.iterdir()}
    assert {"preprocessor_config.json", "vocab.json", "merges.txt", "tokenizer_config.json"} <= files
    assert not {"processor_config.json", "tokenizer.json"} & files
    assert extractor_settings(v4_dir, "x")[1] == "preprocessor_config.json"
    b = HfClap.from_pretrained(str(v4_dir))
    assert_same_backend(b, backend, v4_dir)


def test_nested_settings_are_found_as_transformers_finds_them(tmp_path, tiny_hf_dir, backend):  # noqa: F811
    flat = json.loads((tiny_hf_dir / "preprocessor_config.json").read_text())
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_hf_dir, ckpt)
    (ckpt / "preprocessor_config.json").unlink()
    # the "audio_processor" key, the other nested form transformers reads
    (ckpt / "processor_config.json").write_text(json.dumps({"audio_processor": flat, "processor_class": "X"}))
    assert extractor_settings(ckpt, "x") == (flat, "processor_config.json ('audio_processor')")
    assert_same_backend(HfClap.from_pretrained(str(ckpt)), backend, ckpt)
    # nested settings win over a preprocessor_config.json beside them (a wrong one here)
    (ckpt / "preprocessor_config.json").write_text(json.dumps({**flat, "feature_size": 32}))
    (ckpt / "processor_config.json").write_text(json.dumps({"feature_extractor": flat}))
    assert HfClap.from_pretrained(str(ckpt)).front.n_mels == 64
    # a processor_config.json without nested settings (4.x processors with extra attributes) is skipped
    (ckpt / "processor_config.json").write_text(json.dumps({"processor_class": "ClapProcessor"}))
    (ckpt / "preprocessor_config.json").write_text(json.dumps(flat))
    assert extractor_settings(ckpt, "x") == (flat, "preprocessor_config.json")
    assert HfClap.from_pretrained(str(ckpt)).num_samples == 480000


def one_line_error(path: Path, match: str) -> str:
    with pytest.raises(BackendError, match=match) as info:
        HfClap.from_pretrained(str(path))
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


def test_missing_or_corrupt_extractor_settings(tmp_path, processor_dir):
    flat = extractor_settings(processor_dir, "x")[0]
    ckpt = tmp_path / "ckpt"
    shutil.copytree(processor_dir, ckpt)
    pc = ckpt / "processor_config.json"
    pre = ckpt / "preprocessor_config.json"
    pc.unlink(missing_ok=True)
    pre.unlink(missing_ok=True)
    msg = one_line_error(ckpt, "no feature-extractor settings")
    assert "preprocessor_config.json" in msg and "processor_config.json" in msg
    cases = [
        (pc, '{"feature_extractor": {"feature_size": 64,', r"processor_config.json is not valid JSON"),
        (pc, b"\xff\xfe\x00garbage", r"cannot read processor_config.json|not valid JSON"),
        (pc, json.dumps({"feature_extractor": [1, 2]}), "holds list"),
        (pc, json.dumps({"feature_extractor": {**flat, "feature_extractor_type": "WhisperFeatureExtractor"}}),
         "not a ClapFeatureExtractor"),
        (pc, json.dumps({"feature_extractor": {**flat, "feature_size": 32}}),
         r"processor_config.json \('feature_extractor'\) has 32 mel bins but the model expects 64"),
        (pc, json.dumps({"feature_extractor": {**flat, "sampling_rate": "fast"}}), "feature extractor|settings"),
        (pc, json.dumps({"feature_extractor": {**flat, "hop_length": 0}}), "hop_length must be positive"),
        (pc, json.dumps({"feature_extractor": {**flat, "max_length_s": -1}}), "nb_max_samples must be positive"),
        (pc, json.dumps({"feature_extractor": {**flat, "padding": "mirror"}}), "unknown padding 'mirror'"),
        (pre, "", r"preprocessor_config.json is not valid JSON"),
        (pre, "[]", "holds list"),
    ]
    for path, content, match in cases:
        pc.unlink(missing_ok=True)
        pre.unlink(missing_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        one_line_error(ckpt, match)
    pc.unlink(missing_ok=True)
    (ckpt / "config.json").unlink()
    one_line_error(ckpt, "config.json is missing")
