"""Tiny random ``transformers.ClapModel`` checkpoints for tests (no download, built in a second or two).

Reuse from any test file (pytest puts ``tests/`` on ``sys.path``)::

    from hf_fixtures import make_tiny_hf_clap, tiny_hf_dir  # noqa: F401  (the fixture must be imported by name)

    def test_something(tiny_hf_dir):
        backend = load_backend(f"hf:{tiny_hf_dir}")

The checkpoint keeps LAION CLAP's real *geometry* (48 kHz, 10 s windows, n_fft 1024, hop 480, 64 mel bins,
spec_size 256, so HTSAT folds time into 4 chunks exactly as the released models do) with tiny widths
(8 → 64 channels over 4 Swin stages, one block each; a 2-layer, 32-wide RoBERTa text tower over a byte-level
vocabulary of 261 tokens; 16-d projections). The directory holds what ``hf:<dir>`` needs: ``config.json`` +
``model.safetensors`` (``ClapModel.save_pretrained``), the feature extractor's settings and the tokenizer files
(``RobertaTokenizer`` with a byte-level BPE vocabulary and no merges), in one of three layouts (``layout=``):

- ``"extractor"`` (default): ``ClapFeatureExtractor.save_pretrained`` + ``RobertaTokenizer.save_pretrained``
  with the installed transformers (a flat ``preprocessor_config.json``);
- ``"processor"``: ``ClapProcessor(feature_extractor, tokenizer).save_pretrained`` with the installed transformers
  (5.x: ``processor_config.json`` with the extractor's settings nested under ``"feature_extractor"``);
- ``"v4"``: the files transformers 4.x wrote, written by hand: a flat ``preprocessor_config.json`` carrying
  ``processor_class``, and the slow tokenizer's ``vocab.json`` / ``merges.txt`` / ``tokenizer_config.json`` /
  ``special_tokens_map.json`` (no ``tokenizer.json``).
"""

from __future__ import annotations

import json
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


SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
            "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>"}


def _extractor_settings(fused: bool) -> dict:
    """The extractor's constructor arguments: LAION's geometry (``rand_trunc`` or ``fusion``)."""
    return dict(feature_size=64, sampling_rate=48000, hop_length=480, max_length_s=10, fft_window_size=1024,
                frequency_min=50, frequency_max=14000, truncation="fusion" if fused else "rand_trunc",
                padding="repeatpad")


def _write_v4_files(out_dir: Path, fused: bool) -> None:
    """What ``ClapProcessor.save_pretrained`` wrote in transformers 4.x (the keys of LAION's released
    ``preprocessor_config.json``), and the slow RoBERTa tokenizer's files."""
    pre = {"chunk_length_s": 10, "feature_extractor_type": "ClapFeatureExtractor", "feature_size": 64,
           "fft_window_size": 1024, "frequency_max": 14000, "frequency_min": 50, "hop_length": 480,
           "max_length_s": 10, "n_fft": 1024, "nb_frequency_bins": 513, "nb_max_frames": 1000,
           "nb_max_samples": 480000, "padding": "repeatpad", "padding_side": "right", "padding_value": 0.0,
           "processor_class": "ClapProcessor", "return_attention_mask": False, "sampling_rate": 48000,
           "top_db": None, "truncation": "fusion" if fused else "rand_trunc"}
    (out_dir / "preprocessor_config.json").write_text(json.dumps(pre, indent=2, sort_keys=True) + "\n")
    (out_dir / "vocab.json").write_text(json.dumps(_byte_level_vocab(), ensure_ascii=False), encoding="utf-8")
    (out_dir / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(SPECIALS, indent=2) + "\n")
    config = {"tokenizer_class": "RobertaTokenizer", "processor_class": "ClapProcessor", "model_max_length": 128,
              "add_prefix_space": False, "errors": "replace", "trim_offsets": True, **SPECIALS}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def make_tiny_hf_clap(out_dir: Path, *, fused: bool = False, seed: int = 0,
                      logit_scale: float = 30.0, layout: str = "extractor") -> Path:
    """Write a tiny random LAION-style CLAP checkpoint into ``out_dir`` and return ``out_dir``.

    Args:
        fused: build a fusion model (``enable_fusion=True``, ``fusion_type="aff_2d"``, extractor
            ``truncation="fusion"`` with its HTK filterbank) instead of a ``rand_trunc`` one.
        seed: torch seed for the random weights.
        logit_scale: the model's (exponentiated) audio/text logit scale; larger than HF's default 1/0.07 so
            that zero-shot probabilities of a random model are far from uniform.
        layout: how the extractor and tokenizer files are written: ``"extractor"``, ``"processor"`` or
            ``"v4"`` (see the module docstring). The weights depend only on ``seed`` and ``fused``.
    """
    from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig
    from transformers import RobertaTokenizer

    if layout not in ("extractor", "processor", "v4"):
        raise ValueError(f"unknown layout {layout!r}")
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
    if layout == "v4":
        _write_v4_files(out_dir, fused)
        return out_dir
    extractor = ClapFeatureExtractor(**_extractor_settings(fused))
    if layout == "processor":
        from transformers import ClapProcessor

        # only saved, never called: ClapProcessor(text=..., audio=...) crops audio to 512 samples in 5.x
        ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out_dir)
    else:
        extractor.save_pretrained(out_dir)
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
