"""Tiny random ``transformers.ClapModel`` checkpoints for tests (no download, built in a second or two).

Reuse from any test file (pytest puts ``tests/`` on ``sys.path``)::

    from hf_fixtures import make_tiny_hf_clap, tiny_hf_dir  # noqa: F401  (the fixture must be imported by name)

    def test_something(tiny_hf_dir):
        backend = load_backend(f"hf:{tiny_hf_dir}")

The checkpoint keeps LAION CLAP's real *geometry* (48 kHz, 10 s windows, n_fft 1024, hop 480, 64 mel bins,
spec_size 256, so HTSAT folds time into 4 chunks exactly as the released models do) with tiny widths
(8 → 64 channels over 4 Swin stages, one block each; a 2-layer, 32-wide RoBERTa text tower over a byte-level
vocabulary of 261 tokens; 16-d projections). The directory holds what ``hf:<dir>`` needs: ``config.json`` +
``model.safetensors`` (``ClapModel.save_pretrained``), ``preprocessor_config.json`` (``ClapFeatureExtractor``)
and the tokenizer files (``RobertaTokenizer`` with a byte-level BPE vocabulary and no merges).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch


def _byte_level_vocab() -> dict[str, int]:
    """RoBERTa's special tokens + the 256 byte-level symbols (GPT-2's printable byte → unicode map)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for b in range(256):
        vocab[chars[b]] = len(vocab)
    vocab["<mask>"] = len(vocab)
    return vocab


def make_tiny_hf_clap(out_dir: Path, *, fused: bool = False, seed: int = 0,
                      logit_scale: float = 30.0) -> Path:
    """Write a tiny random LAION-style CLAP checkpoint into ``out_dir`` and return ``out_dir``.

    Args:
        fused: build a fusion model (``enable_fusion=True``, ``fusion_type="aff_2d"``, extractor
            ``truncation="fusion"`` with its HTK filterbank) instead of a ``rand_trunc`` one.
        seed: torch seed for the random weights.
        logit_scale: the model's (exponentiated) audio/text logit scale; larger than HF's default 1/0.07 so
            that zero-shot probabilities of a random model are far from uniform.
    """
    from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig
    from transformers import RobertaTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = RobertaTokenizer(vocab=_byte_level_vocab(), merges=[], model_max_length=128)
    text = ClapTextConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, max_position_embeddings=130, pad_token_id=1, bos_token_id=0,
                          eos_token_id=2)
    audio = ClapAudioConfig(spec_size=256, num_mel_bins=64, patch_embeds_hidden_size=8, hidden_size=64,
                            depths=[1, 1, 1, 1], num_attention_heads=[1, 2, 2, 4], window_size=8,
                            enable_fusion=fused, fusion_type="aff_2d" if fused else None, aff_block_r=2)
    config = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16,
                        logit_scale_init_value=logit_scale)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = ClapModel(config).eval()
        # HF's init (std 0.02) makes every prompt's pooled <s> token nearly the same; widen the text tower's
        # weights so that different prompts get different embeddings (and zero-shot scores differ)
        for m in model.text_model.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.normal_(m.weight, std=m.in_features ** -0.5)
            elif isinstance(m, torch.nn.Embedding):
                torch.nn.init.normal_(m.weight, std=1.0)
        for name, p in model.audio_model.named_parameters():
            if name.endswith("relative_position_bias_table"):  # HF inits these to zero
                torch.nn.init.normal_(p, std=0.5)
        # give the BatchNorms non-trivial statistics so that eval-mode normalisation is actually exercised
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(-30.0 if m.num_features == 64 else 0.0, 5.0 if m.num_features == 64 else 0.1)
                m.running_var.uniform_(0.5, 2.0).mul_(100.0 if m.num_features == 64 else 1.0)
    finally:
        torch.random.set_rng_state(state)
    assert math.isclose(float(model.logit_scale_a.detach().exp()), logit_scale, rel_tol=1e-5)
    model.save_pretrained(out_dir)
    ClapFeatureExtractor(feature_size=64, sampling_rate=48000, hop_length=480, max_length_s=10,
                         fft_window_size=1024, frequency_min=50, frequency_max=14000,
                         truncation="fusion" if fused else "rand_trunc",
                         padding="repeatpad").save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random non-fused (``rand_trunc``) HF CLAP checkpoint directory, built once per session."""
    return make_tiny_hf_clap(tmp_path_factory.mktemp("tiny_hf_clap"))


@pytest.fixture(scope="session")
def tiny_hf_fused_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As :func:`tiny_hf_dir` but a fusion model (``enable_fusion=True``, extractor ``truncation="fusion"``)."""
    return make_tiny_hf_clap(tmp_path_factory.mktemp("tiny_hf_clap_fused"), fused=True, seed=1)
