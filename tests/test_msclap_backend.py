"""MS-CLAP 2022 backend (``msclap2022:<pth>``) against a synthetic checkpoint with the real file's layout.

The key names and shapes below are written out from msclap 1.3.4's source (``msclap/models/clap.py``,
``audio.py``, ``configs/config_2022.yml``) and torchlibrosa's, independently of ``lmaczs.clap.msclap``: the full
CNN14 (81 M parameters) and projections, a reduced BERT (64 wide, 2 layers; the bert-base-uncased vocabulary).
References (front end, CNN14, BERT, zero-shot) are computed here in numpy / plain functional torch from the
state dict itself.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmaczs.clap import load_backend
from lmaczs.clap.msclap import MsClap2022, MsClapConfig, read_checkpoint
from lmaczs.errors import BackendError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SR, N_FFT, HOP, N_MELS, FMIN, FMAX = 44100, 1024, 320, 64, 50.0, 14000.0
WIDTHS = (64, 128, 256, 512, 1024, 2048)
BERT = dict(hidden=64, layers=2, inter=128, max_pos=128, vocab=30522, heads=2)


# -- independent references ------------------------------------------------------------------------------
def ref_slaney_mel() -> np.ndarray:
    """librosa.filters.mel(sr=44100, n_fft=1024, n_mels=64, fmin=50, fmax=14000) (slaney scale and norm),
    written filter by filter. Returns ``(513, 64)``."""
    def hz2mel(f):
        f = float(f)
        return 15.0 + math.log(f / 1000.0) / (math.log(6.4) / 27.0) if f >= 1000 else f * 3.0 / 200.0

    def mel2hz(m):
        return 1000.0 * math.exp((math.log(6.4) / 27.0) * (m - 15.0)) if m >= 15 else m * 200.0 / 3.0

    lo, hi = hz2mel(FMIN), hz2mel(FMAX)
    edges = [mel2hz(lo + (hi - lo) * i / (N_MELS + 1)) for i in range(N_MELS + 2)]
    freqs = np.arange(N_FFT // 2 + 1) * SR / N_FFT
    w = np.zeros((N_FFT // 2 + 1, N_MELS))
    for m in range(N_MELS):
        a, c, b = edges[m:m + 3]
        tri = np.clip(np.minimum((freqs - a) / (c - a), (b - freqs) / (b - c)), 0.0, None)
        w[:, m] = tri * 2.0 / (b - a)
    return w


def ref_dft_kernels() -> tuple[np.ndarray, np.ndarray]:
    """torchlibrosa STFT conv kernels: ``real[k, n] = w[n] cos(2πkn/N)``, ``imag = -w[n] sin(2πkn/N)``."""
    n = np.arange(N_FFT)
    w = 0.5 * (1.0 - np.cos(2.0 * np.pi * n / N_FFT))
    phase = 2.0 * np.pi * np.outer(np.arange(N_FFT // 2 + 1), n) / N_FFT
    return w * np.cos(phase), -w * np.sin(phase)


def ref_logmel(wave: np.ndarray) -> np.ndarray:
    """torchlibrosa Spectrogram (centre, reflect, conv-STFT, power 2) + LogmelFilterBank (ref 1, amin 1e-10,
    top_db None) in float64. ``(N,)`` → ``(T, 64)``."""
    x = np.pad(np.asarray(wave, np.float64), N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    real_k, imag_k = ref_dft_kernels()
    power = (frames @ real_k.T) ** 2 + (frames @ imag_k.T) ** 2
    return 10.0 * np.log10(np.maximum(power @ ref_slaney_mel(), 1e-10))


def ref_projection(sd: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    e1 = x @ sd[f"{prefix}.linear1.weight"].T
    e = e1 + F.gelu(e1) @ sd[f"{prefix}.linear2.weight"].T
    return F.layer_norm(e, e.shape[-1:], sd[f"{prefix}.layer_norm.weight"], sd[f"{prefix}.layer_norm.bias"])


def ref_audio_embedding(sd: dict, logmel: torch.Tensor) -> torch.Tensor:
    """msclap Cnn14 (eval) + projection straight from the state dict. ``(B, T, 64)`` → ``(B, 1024)``."""
    p = "audio_encoder.base."

    def bn(x, name):
        return F.batch_norm(x, sd[p + name + ".running_mean"], sd[p + name + ".running_var"],
                            sd[p + name + ".weight"], sd[p + name + ".bias"], training=False, eps=1e-5)

    x = bn(logmel[:, None].transpose(1, 3), "bn0").transpose(1, 3)
    for k in range(1, 7):
        b = f"conv_block{k}"
        x = F.relu(bn(F.conv2d(x, sd[p + b + ".conv1.weight"], padding=1), b + ".bn1"))
        x = F.relu(bn(F.conv2d(x, sd[p + b + ".conv2.weight"], padding=1), b + ".bn2"))
        if k < 6:
            x = F.avg_pool2d(x, 2)
    x = torch.mean(x, dim=3)
    x = torch.max(x, dim=2)[0] + torch.mean(x, dim=2)
    emb = F.relu(F.linear(x, sd[p + "fc1.weight"], sd[p + "fc1.bias"]))
    return ref_projection(sd, "audio_encoder.projection", emb)


def ref_text_embedding(sd: dict, ids: torch.Tensor, mask: torch.Tensor, heads: int) -> torch.Tensor:
    """BERT (post-LN, exact GELU) [CLS] output + projection, by hand. ``(P, L)`` ids → ``(P, 1024)``."""
    p = "caption_encoder.base."
    g = lambda k: sd[p + k]  # noqa: E731
    P, L = ids.shape
    H = g("embeddings.word_embeddings.weight").shape[1]
    d = H // heads

    def ln(x, k):
        return F.layer_norm(x, (H,), g(k + ".weight"), g(k + ".bias"), eps=1e-12)

    def lin(x, k):
        return x @ g(k + ".weight").T + g(k + ".bias")

    x = g("embeddings.word_embeddings.weight")[ids] + g("embeddings.position_embeddings.weight")[:L] \
        + g("embeddings.token_type_embeddings.weight")[torch.zeros_like(ids)]
    x = ln(x, "embeddings.LayerNorm")
    key_bias = (1.0 - mask[:, None, None, :].float()) * -1e9
    for i in range(BERT["layers"]):
        q_, k_, v_ = (lin(x, f"encoder.layer.{i}.attention.self.{n}").view(P, L, heads, d).transpose(1, 2)
                      for n in ("query", "key", "value"))
        att = torch.softmax(q_ @ k_.transpose(-1, -2) / math.sqrt(d) + key_bias, dim=-1) @ v_
        att = att.transpose(1, 2).reshape(P, L, H)
        e = f"encoder.layer.{i}."
        x = ln(x + lin(att, e + "attention.output.dense"), e + "attention.output.LayerNorm")
        ff = lin(F.gelu(lin(x, e + "intermediate.dense")), e + "output.dense")
        x = ln(x + ff, e + "output.LayerNorm")
    return ref_projection(sd, "caption_encoder.projection", x[:, 0])


# -- the synthetic checkpoint ----------------------------------------------------------------------------
def checkpoint_layout() -> dict[str, tuple[int, ...]]:
    """Names and shapes of ``CLAP_weights_2022.pth["model"]`` (msclap 1.3.4 CLAP, config_2022), reduced BERT."""
    out: dict[str, tuple[int, ...]] = {"logit_scale": ()}
    a = "audio_encoder.base."
    out[a + "spectrogram_extractor.stft.conv_real.weight"] = (513, 1, 1024)
    out[a + "spectrogram_extractor.stft.conv_imag.weight"] = (513, 1, 1024)
    out[a + "logmel_extractor.melW"] = (513, 64)

    def bn(name, c):
        for s in ("weight", "bias", "running_mean", "running_var"):
            out[f"{name}.{s}"] = (c,)
        out[f"{name}.num_batches_tracked"] = ()

    bn(a + "bn0", 64)
    c_in = 1
    for k, c in enumerate(WIDTHS, 1):
        out[f"{a}conv_block{k}.conv1.weight"] = (c, c_in, 3, 3)
        out[f"{a}conv_block{k}.conv2.weight"] = (c, c, 3, 3)
        bn(f"{a}conv_block{k}.bn1", c)
        bn(f"{a}conv_block{k}.bn2", c)
        c_in = c
    out.update({a + "fc1.weight": (2048, 2048), a + "fc1.bias": (2048,),
                a + "fc_audioset.weight": (527, 2048), a + "fc_audioset.bias": (527,)})

    def projection(prefix, d_in):
        out.update({f"{prefix}.linear1.weight": (1024, d_in), f"{prefix}.linear2.weight": (1024, 1024),
                    f"{prefix}.layer_norm.weight": (1024,), f"{prefix}.layer_norm.bias": (1024,)})

    projection("audio_encoder.projection", 2048)
    t, H, I = "caption_encoder.base.", BERT["hidden"], BERT["inter"]
    out.update({t + "embeddings.word_embeddings.weight": (BERT["vocab"], H),
                t + "embeddings.position_embeddings.weight": (BERT["max_pos"], H),
                t + "embeddings.token_type_embeddings.weight": (2, H),
                t + "embeddings.LayerNorm.weight": (H,), t + "embeddings.LayerNorm.bias": (H,)})
    for i in range(BERT["layers"]):
        e = f"{t}encoder.layer.{i}."
        for n in ("query", "key", "value"):
            out.update({f"{e}attention.self.{n}.weight": (H, H), f"{e}attention.self.{n}.bias": (H,)})
        out.update({f"{e}attention.output.dense.weight": (H, H), f"{e}attention.output.dense.bias": (H,),
                    f"{e}attention.output.LayerNorm.weight": (H,), f"{e}attention.output.LayerNorm.bias": (H,),
                    f"{e}intermediate.dense.weight": (I, H), f"{e}intermediate.dense.bias": (I,),
                    f"{e}output.dense.weight": (H, I), f"{e}output.dense.bias": (H,),
                    f"{e}output.LayerNorm.weight": (H,), f"{e}output.LayerNorm.bias": (H,)})
    out.update({t + "pooler.dense.weight": (H, H), t + "pooler.dense.bias": (H,)})
    projection("caption_encoder.projection", H)
    return out


def make_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random but well-scaled weights (He-scaled convs, plausible BatchNorm statistics) in the real layout."""
    g = torch.Generator().manual_seed(seed)
    real_k, imag_k = ref_dft_kernels()
    sd: dict[str, torch.Tensor] = {}
    for name, shape in checkpoint_layout().items():
        leaf = name.rsplit(".", 1)[-1]
        if name.endswith("conv_real.weight"):
            v = torch.from_numpy(real_k[:, None, :]).float()
        elif name.endswith("conv_imag.weight"):
            v = torch.from_numpy(imag_k[:, None, :]).float()
        elif name.endswith("melW"):
            v = torch.from_numpy(ref_slaney_mel()).float()
        elif name == "logit_scale":
            v = torch.tensor(math.log(1 / 0.07))
        elif leaf == "num_batches_tracked":
            v = torch.tensor(1000, dtype=torch.long)
        elif name.endswith("bn0.running_mean"):
            v = -40.0 + 5.0 * torch.randn(shape, generator=g)  # dB-scale statistics of the input
        elif name.endswith("bn0.running_var"):
            v = 200.0 + 100.0 * torch.rand(shape, generator=g)
        elif leaf == "running_mean":
            v = 0.1 * torch.randn(shape, generator=g)
        elif leaf == "running_var":
            v = 0.5 + torch.rand(shape, generator=g)
        elif len(shape) == 1 and ("bn" in name or "LayerNorm" in name or "layer_norm" in name) and leaf == "weight":
            v = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            v = 0.05 * torch.randn(shape, generator=g)
        elif name.startswith("caption_encoder.base.embeddings"):
            v = 0.5 * torch.randn(shape, generator=g)
        else:  # conv / linear weights, He-scaled by fan-in
            v = torch.randn(shape, generator=g) * math.sqrt(2.0 / int(np.prod(shape[1:])))
        sd[name] = v
    return sd


@pytest.fixture(scope="module")
def state_dict() -> dict[str, torch.Tensor]:
    return make_state_dict()


@pytest.fixture(scope="module")
def ckpt_path(state_dict, tmp_path_factory) -> Path:
    """A .pth like the public file: {'model': state dict, ...}, with the legacy BERT position_ids buffer."""
    path = tmp_path_factory.mktemp("msclap") / "CLAP_weights_2022.pth"
    sd = dict(state_dict)
    sd["caption_encoder.base.embeddings.position_ids"] = torch.arange(BERT["max_pos"])[None]
    torch.save({"model": sd, "epoch": 42}, path)
    return path


@pytest.fixture(scope="module")
def backend(ckpt_path) -> MsClap2022:
    return MsClap2022.from_checkpoint(ckpt_path, num_attention_heads=BERT["heads"])


def test_layout_matches_our_module_tree_and_loads_strictly(backend, state_dict, ckpt_path):
    loaded = backend.model.state_dict()
    assert set(loaded) == set(state_dict)  # strict: every checkpoint name, nothing else
    assert all(torch.equal(loaded[k], state_dict[k]) for k in state_dict)
    assert backend.spec == f"msclap2022:{ckpt_path}"
    assert (backend.sample_rate, backend.num_samples, backend.pad_mode) == (44100, 220500, "repeat")
    assert not backend.training and not any(p.requires_grad for p in backend.parameters())
    assert float(backend.logit_scale) == pytest.approx(1 / 0.07, rel=1e-6)


def test_config_is_read_off_the_shapes(state_dict):
    cfg = MsClapConfig.from_state_dict(state_dict)
    assert cfg.widths == WIDTHS and (cfg.out_emb, cfg.num_classes, cfg.d_proj) == (2048, 527, 1024)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (64, 2, 128)
    assert (cfg.max_position_embeddings, cfg.vocab_size, cfg.n_fft, cfg.n_mels) == (128, 30522, 1024, 64)
    assert cfg.num_attention_heads == 1  # hidden // 64 by default (12 for bert-base's 768)
    assert MsClapConfig.from_state_dict(state_dict, num_attention_heads=4).num_attention_heads == 4
    assert MsClapConfig() == MsClapConfig(num_attention_heads=768 // 64)  # the defaults are bert-base


@pytest.mark.parametrize("change", ["missing", "extra", "shape"])
def test_strict_loading_rejects_a_wrong_key(state_dict, change):
    sd = dict(state_dict)
    key = "audio_encoder.base.conv_block4.bn2.running_var"
    if change == "missing":
        del sd[key]
    elif change == "extra":
        key = "audio_encoder.base.fc2.weight"
        sd[key] = torch.zeros(3)
    else:
        sd[key] = torch.ones(7)
    with pytest.raises(BackendError) as err:
        MsClap2022.from_state_dict(sd, num_attention_heads=BERT["heads"])
    msg = str(err.value)
    assert "\n" not in msg and key in msg and {"missing": "missing", "extra": "unexpected",
                                               "shape": "shape mismatch"}[change] in msg


def test_a_checkpoint_with_another_front_end_is_rejected(state_dict):
    sd = dict(state_dict)
    mel_w = "audio_encoder.base.logmel_extractor.melW"
    sd[mel_w] = torch.flip(state_dict[mel_w], [1])  # filters in reverse order
    with pytest.raises(BackendError, match="melW"):
        MsClap2022.from_state_dict(sd, num_attention_heads=BERT["heads"])
    sd = dict(state_dict)
    sd["audio_encoder.base.spectrogram_extractor.stft.conv_imag.weight"] = -state_dict[
        "audio_encoder.base.spectrogram_extractor.stft.conv_imag.weight"]
    with pytest.raises(BackendError, match="conv_imag"):
        MsClap2022.from_state_dict(sd, num_attention_heads=BERT["heads"])


def test_unreadable_or_unsafe_checkpoints_give_one_line_errors(tmp_path):
    with pytest.raises(BackendError, match="not found"):
        load_backend(f"msclap2022:{tmp_path / 'nope.pth'}")
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": {"logit_scale": torch.zeros(())}, "args": argparse.Namespace(a=1)}, unsafe)
    with pytest.raises(BackendError, match="weights_only") as err:
        MsClap2022.from_checkpoint(unsafe)
    assert "\n" not in str(err.value)
    assert "argparse.Namespace" in str(err.value)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(BackendError, match="cannot read"):
        MsClap2022.from_checkpoint(junk)
    with pytest.raises(BackendError, match="needs a checkpoint path"):
        load_backend("msclap2022:")


def test_numpy_scalar_metadata_is_allowed_but_nothing_else(tmp_path):
    path = tmp_path / "meta.pth"
    torch.save({"model": {"logit_scale": torch.zeros(())}, "loss": np.float64(0.25), "dt": np.dtype("f4")}, path)
    assert list(read_checkpoint(path)) == ["logit_scale"]
    with pytest.raises(BackendError, match="lacks 'audio_encoder.base.conv_block1.conv1.weight'"):
        MsClap2022.from_checkpoint(path)  # read fine; then the layout check speaks


def test_front_end_matches_torchlibrosa_reference(backend):
    rng = np.random.default_rng(0)
    t = np.arange(220500) / SR
    waves = [0.3 * rng.standard_normal(220500) * np.exp(-2 * t) + 0.2 * np.sin(2 * np.pi * 440 * t)]
    clips = sorted((DATA / "esc50" / "audio").glob("*.flac"))[:2]
    if clips:  # real recordings: wide dynamic range, quiet bands
        import soundfile as sf

        waves += [sf.read(str(c), dtype="float64")[0][:220500] for c in clips]
    for wave in waves:
        ref = ref_logmel(wave)
        for dtype in (torch.float64, torch.float32):
            x = torch.from_numpy(wave).to(dtype)[None]
            paths = {"front": backend.front(x)[0]}
            for domain in ("stft", "mel"):  # InputTf of the unmasked masking-domain X gives the same features
                backend.set_domain(domain)
                paths[domain] = backend.domain.input_transform(backend.analyze(x)[0])[0]
            backend.set_domain("stft")
            for name, got in paths.items():
                err = np.abs(got.double().numpy() - ref)
                assert got.shape == (690, 64) and got.dtype == dtype
                if dtype == torch.float64:  # the semantics: equal to the reference
                    assert err.max() <= 1e-4, (name, err.max())
                else:  # float32 rounding: tiny except in the quietest bins (-90 dB), where STFT sums cancel
                    loud = ref > ref.max() - 60.0
                    assert err[loud].max() <= 1e-3 and err.max() <= 0.05, (name, err[loud].max(), err.max())


def test_hidden_representations_shapes(backend):
    assert backend.mask_shape() == (690, 513)
    assert backend.hidden_shapes() == [(256, 86, 8), (512, 43, 4), (1024, 21, 2), (2048, 21, 2)]
    backend.set_domain("mel")
    try:
        assert backend.mask_shape() == (690, 64)
    finally:
        backend.set_domain("stft")


def test_tokenizer_is_msclaps():
    from lmaczs.clap.msclap import bert_tokenizer

    tok = bert_tokenizer()
    assert len(tok) == 30522
    enc = tok(["The DOG barking"], padding="max_length", max_length=100, truncation=True)
    ids = enc["input_ids"][0]
    assert len(ids) == 100 and ids[:3] == [101, 1996, 3899] and ids[4] == 102 and set(ids[5:]) == {0}


@pytest.mark.parametrize("domain", ["stft", "mel"])
def test_gradients_reach_the_masking_domain(backend, domain):
    backend.set_domain(domain)
    try:
        wave = 0.1 * torch.randn(1, backend.num_samples, generator=torch.Generator().manual_seed(1))
        x, _ = backend.analyze(wave)
        x = x.detach().requires_grad_(True)
        enc = backend.encode_spec(x)
        text = backend.embed_text(["dog barking"])
        (enc.embedding @ text.T).sum().backward()
        g = x.grad
        assert g is not None and torch.isfinite(g).all()
        assert (g != 0).float().mean() > 0.5  # reaches most time-frequency bins
    finally:
        backend.set_domain("stft")


def test_zero_shot_equals_an_independent_computation(backend, state_dict):
    prompts = ["dog barking", "rain falling on a roof", "a baby crying", "church bells"]
    rng = np.random.default_rng(3)
    t = np.arange(220500) / SR
    waves = np.stack([0.2 * np.sin(2 * np.pi * 300 * t) + 0.05 * rng.standard_normal(t.size),
                      0.5 * rng.standard_normal(t.size) * (t % 1 < 0.3)])
    # reference: numpy front end → CNN14 / BERT straight from the state dict
    logmel = torch.from_numpy(np.stack([ref_logmel(w) for w in waves])).float()
    with torch.no_grad():
        a_ref = F.normalize(ref_audio_embedding(state_dict, logmel), dim=-1)
        tok = backend.tokenizer(prompts, padding="max_length", max_length=100, truncation=True, return_tensors="pt")
        t_ref = ref_text_embedding(state_dict, tok["input_ids"], tok["attention_mask"], BERT["heads"])
        t_ref = F.normalize(t_ref, dim=-1)
        p_ref = torch.softmax(state_dict["logit_scale"].exp() * a_ref @ t_ref.T, dim=-1)
        # the backend, through its default masking domain (unmasked X)
        wave = torch.from_numpy(waves).float()
        emb = backend.encode_spec(backend.analyze(wave)[0]).embedding
        txt = backend.embed_text(prompts)
        probs = torch.softmax(backend.logit_scale * emb @ txt.T, dim=-1)
    assert (a_ref @ t_ref.T).abs().max() < 0.999  # a non-degenerate problem
    assert (emb - a_ref).abs().max() < 1e-4 and (txt - t_ref).abs().max() < 1e-4
    assert (probs - p_ref).abs().max() < 1e-4, (probs - p_ref).abs().max()
    assert probs.argmax(-1).tolist() == p_ref.argmax(-1).tolist()
    assert torch.allclose(txt, backend.embed_text(prompts[::-1]).flip(0), atol=1e-5)  # batch-independent


def test_short_clips_are_repeated_like_msclap(backend):
    clip = torch.arange(1, 100001, dtype=torch.float32)  # 100 000 samples < 220 500
    fitted = backend.fit_window(clip[None])[0]
    expected = np.tile(clip.numpy(), 3)[:220500]  # msclap: repeat ceil(220500 / n) times, then crop
    assert np.array_equal(fitted.numpy(), expected)


def test_safetensors_copy_through_load_backend(state_dict, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "clap2022.safetensors"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path))
    b = load_backend(f"msclap2022:{path}", domain="mel")
    assert b.domain_name == "mel" and b.config.num_attention_heads == 1
    assert torch.equal(b.model.audio_encoder.base.fc1.weight, state_dict["audio_encoder.base.fc1.weight"])
