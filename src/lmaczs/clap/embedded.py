"""The embedded CLAP shipped with lmaczs: aisfx sound-effects CNN + all-MiniLM-L6-v2, aligned on ESC-50.

Audio: 44.1 kHz, 5 s windows (zero-padded), peak-normalised → aisfx log-mel ``(B, 216, 96)`` → aisfx CNN; its four
block outputs are the hidden representations — (64, 108, 48), (128, 54, 24), (256, 27, 12), (512, 27, 12) for one
window — and its pooled 512-d embedding goes through a trained projection. Text: frozen MiniLM (384-d, mean-pooled)
→ trained projection. Both projections land in a shared space of ``embed_dim``; the logit scale is learned.

Packaged models live in ``assets/<name>/clap.safetensors`` + ``clap.json``; the frozen CNN is shared
(``assets/aisfx_backbone.safetensors``), and a model whose top block was fine-tuned stores that block itself.
Rebuild one with ``lmac-zs train-clap`` (see docs/model-card.md).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BackendError
from .aisfx import ASSETS, BACKBONE_FILE, EMBED_DIM, SAMPLE_RATE, AisfxBackbone, aisfx_front_end, load_backbone_state
from .base import AudioEncoding, ClapBackend, freeze
from .minilm import MINILM_DIM, MiniLmEncoder
from .projection import Projection

FORMAT = "lmaczs-embedded-clap/1"
WEIGHTS, CONFIG = "clap.safetensors", "clap.json"
TOP_BLOCK = "backbone.blocks.3."
MAX_LOGIT_SCALE = 100.0
PACKAGED = ("default", "esc50-eval")


def default_config() -> dict:
    """Architecture of a fresh model (``clap.json`` holds these keys plus provenance)."""
    return {"format": FORMAT, "embed_dim": 256, "audio_hidden": 512, "text_hidden": 0, "dropout": 0.0,
            "finetune_block4": False, "init_logit_scale": 1 / 0.07}


class EmbeddedClap(ClapBackend):
    """aisfx CNN + MiniLM with trained projections. Build with :meth:`from_package` (frozen, eval mode).

    Args:
        config: architecture (see :func:`default_config`).
        name: the spec that reloads it (``default``, ``esc50-eval`` or ``embedded:<dir>``).
        text_encoder: a loaded :class:`MiniLmEncoder` to share (default: load one).
        backbone_file: the converted aisfx weights.
    """

    sample_rate = SAMPLE_RATE
    num_samples = 5 * SAMPLE_RATE
    pad_mode = "zero"
    peak_normalize = True

    def __init__(self, config: dict | None = None, name: str = "embedded", *,
                 text_encoder: MiniLmEncoder | None = None, backbone_file: str | Path = BACKBONE_FILE):
        super().__init__()
        cfg = {**default_config(), **(config or {})}
        self.config = cfg
        self.spec = name
        self.front = aisfx_front_end()
        self.backbone = AisfxBackbone()
        self.backbone.load_state_dict(load_backbone_state(backbone_file))
        d = int(cfg["embed_dim"])
        self.audio_proj = Projection(EMBED_DIM, d, int(cfg["audio_hidden"]), float(cfg["dropout"]))
        self.text_proj = Projection(MINILM_DIM, d, int(cfg["text_hidden"]), float(cfg["dropout"]))
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(float(cfg["init_logit_scale"]))))
        self.text_encoder = text_encoder if text_encoder is not None else MiniLmEncoder()
        freeze(self.backbone)  # BatchNorm statistics never move; training unfreezes what it trains
        self.eval()

    # -- loading / saving ---------------------------------------------------------------------------
    @classmethod
    def from_package(cls, name: str = "default", *, text_encoder: MiniLmEncoder | None = None) -> "EmbeddedClap":
        """Load a packaged model (``default``, ``esc50-eval``) or a directory written by :meth:`save`.

        Raises:
            BackendError: the model's files are missing or do not match this code.
        """
        from safetensors.torch import load_file

        if not name:
            raise BackendError("embedded CLAP needs a model name (default, esc50-eval) or a directory")
        is_dir = name not in PACKAGED  # anything else names a directory written by save()
        root = Path(name).expanduser() if is_dir else ASSETS / name
        weights, config_file = root / WEIGHTS, root / CONFIG
        if not weights.is_file() or not config_file.is_file():
            what = f"directory {root}" if is_dir else f"packaged model {name!r} ({root})"
            if is_dir and not root.is_dir():
                raise BackendError(f"embedded CLAP {name!r} is neither a packaged model ({', '.join(PACKAGED)}) nor a "
                                   "directory; build one with `lmac-zs train-clap`")
            raise BackendError(f"embedded CLAP {what} lacks {WEIGHTS} or {CONFIG}; "
                               "build it with `lmac-zs train-clap` (see docs/model-card.md)")
        try:
            config = json.loads(config_file.read_text())
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot read {config_file}: {exc}") from None
        if config.get("format") != FORMAT:
            raise BackendError(f"{config_file} is not an embedded CLAP config (format {config.get('format')!r})")
        model = cls(config, name=name if not is_dir else f"embedded:{root}", text_encoder=text_encoder)
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}
        has_top = any(k.startswith(TOP_BLOCK) for k in state)
        if has_top != bool(config.get("finetune_block4")):
            raise BackendError(f"{weights} and {config_file} disagree about a fine-tuned top block")
        missing, unexpected = model.load_state_dict(state, strict=False)
        expected_missing = {k for k in model.state_dict() if k.startswith(("text_encoder.", "backbone."))}
        bad = [k for k in missing if k not in expected_missing] + list(unexpected)
        if bad:
            raise BackendError(f"{weights} does not match the embedded CLAP architecture (e.g. {bad[0]!r})")
        freeze(model)
        return model

    def trained_state(self, half: bool = False) -> dict[str, torch.Tensor]:
        """What :meth:`save` stores: projections, logit scale and, when fine-tuned, the top CNN block.
        ``half``: weight matrices and conv kernels in fp16 (standardisation, biases, BatchNorm stay fp32)."""
        out = {}
        for k, v in self.state_dict().items():
            trained = k.startswith(("audio_proj.", "text_proj.", "log_logit_scale"))
            if not trained and not (k.startswith(TOP_BLOCK) and self.config["finetune_block4"]):
                continue
            v = v.detach()
            small = half and v.is_floating_point() and (k.endswith(".weight") and v.dim() in (2, 4))
            out[k] = (v.half() if small else v.float() if v.is_floating_point() else v).contiguous()
        return out

    def save(self, out_dir: str | Path, extra: dict | None = None, half: bool = False) -> Path:
        """Write ``clap.safetensors`` + ``clap.json`` atomically into ``out_dir``. Returns the directory."""
        from safetensors.torch import save_file

        from ..checkpoint import atomic_write, atomic_write_text

        out = Path(out_dir)
        state = self.trained_state(half)
        atomic_write(out / WEIGHTS, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT}))
        config = {**self.config, **(extra or {}), "weights_dtype": "float16" if half else "float32"}
        atomic_write_text(out / CONFIG, json.dumps(config, indent=2) + "\n")
        return out

    # -- the model ----------------------------------------------------------------------------------
    def encode_features(self, features: torch.Tensor) -> AudioEncoding:
        """``(B, T, 96)`` aisfx log-mel → embedding ``(B, D)`` and the four block outputs ``(B, C, T_k, F_k)``."""
        hidden = self.backbone.forward_hidden(features)
        return AudioEncoding(self.embed_pooled(self.backbone.pool(hidden[-1])), hidden)

    def embed_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(B, 512)`` pooled CNN features → ``(B, D)`` unit-norm audio embedding."""
        return F.normalize(self.audio_proj(pooled), dim=-1)

    def embed_sentence(self, sentence: torch.Tensor) -> torch.Tensor:
        """``(P, 384)`` MiniLM embeddings → ``(P, D)`` unit-norm text embedding."""
        return F.normalize(self.text_proj(sentence), dim=-1)

    def embed_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """``P`` prompts → ``(P, D)`` L2-normalised (MiniLM, cached per prompt → projection)."""
        return self.embed_sentence(self.text_encoder(prompts).to(self.log_logit_scale.device))

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.log_logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def frame_head(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """The audio projection (aisfx pools mean over frequency, max over time; :meth:`ClapBackend.frame_head`)."""
        p = self.audio_proj
        spec = {"d_in": p.linear.in_features, "d_out": p.linear.out_features,
                "hidden": 0 if p.mlp is None else p.mlp[0].out_features}
        return spec, {k: v.detach().clone() for k, v in p.state_dict().items()}

    def randomizable_blocks(self) -> list[nn.Module]:
        """The four aisfx conv blocks, shallow → deep."""
        return list(self.backbone.blocks)

    def describe(self) -> dict:
        return {**super().describe(), "embed_dim": int(self.config["embed_dim"]),
                "finetune_block4": bool(self.config["finetune_block4"])}
