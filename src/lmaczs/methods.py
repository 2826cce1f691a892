"""Mask methods behind one call, for evaluation: LMAC-ZS decoders and the post-hoc baselines.

>>> method = build_methods(["lmaczs", "gradcam++"], decoder)["gradcam++"]
>>> masks = method(backend, x, text_emb, target)     # (B, T, F) in [0, 1], detached

Baseline defaults are chosen so that the full ESC-50 evaluation (94 clips × 4 conditions × every method) runs
in well under an hour on 2 CPU cores with the embedded model; see :data:`BASELINE_DEFAULTS` and
docs/results.md for the measured per-clip costs.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .baselines import METHODS as BASELINES
from .baselines import get_method
from .clap import ClapBackend
from .decoder import MaskDecoder
from .errors import LmacError

LMACZS, ABLATION = "lmaczs", "lmaczs-ablation"  # ABLATION: a second decoder, compared side by side

LABELS: dict[str, str] = {
    LMACZS: "LMAC-ZS", ABLATION: "LMAC-ZS (ablation)", "gradcam": "GradCAM", "gradcam++": "GradCAM++",
    "scorecam": "ScoreCAM", "saliency": "Saliency", "smoothgrad": "SmoothGrad", "ig": "IG",
}
ALL_METHODS: tuple[str, ...] = (LMACZS, "gradcam", "gradcam++", "scorecam", "saliency", "smoothgrad", "ig")

# Evaluation defaults of the costly baselines (the library's own defaults are larger), set by the time budget
# of the full run (docs/results.md). Measured per clip with the embedded model's architecture on one core, in
# units of one batched forward F (≈ 0.08 s): IG 8 steps ≈ 15F, SmoothGrad 4 samples ≈ 6F, ScoreCAM 8 channels
# ≈ 9F; GradCAM/GradCAM++ ≈ 1F (their backward stops at the last block), Saliency ≈ 2F, LMAC-ZS's decoder
# < 1F. Internal batch sizes bound peak memory.
BASELINE_DEFAULTS: dict[str, dict] = {
    "ig": {"steps": 8, "internal_batch_size": 16},
    "smoothgrad": {"samples": 4, "noise": 0.1, "seed": 0},
    "scorecam": {"max_channels": 8, "batch_size": 16},
}


class MaskMethod:
    """``method(backend, x (B, T, F), text_emb (P, D), target (B,)) → masks (B, T, F)`` in [0, 1]."""

    key: str
    label: str

    def __call__(self, backend: ClapBackend, x: torch.Tensor, text_emb: torch.Tensor, target: torch.Tensor,
                 hidden: list[torch.Tensor] | None = None) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"key": self.key}


class LmacZsMethod(MaskMethod):
    """An LMAC-ZS decoder conditioned on the target prompt's text embedding.

    ``hidden`` (the backend's four representations of ``x``) may be passed to skip the forward pass.
    """

    def __init__(self, decoder: MaskDecoder, key: str = LMACZS, source: str = ""):
        self.decoder = decoder.eval()
        self.key = key
        self.label = LABELS.get(key, key)
        self.source = source

    @torch.no_grad()
    def __call__(self, backend, x, text_emb, target, hidden=None):
        if hidden is None:
            hidden = backend.encode_spec(x).hidden
        target = torch.as_tensor(target, device=x.device).long().reshape(-1).expand(x.shape[0])
        return self.decoder(text_emb[target].to(x), hidden).detach()

    def describe(self) -> dict:
        return {"key": self.key, "decoder": self.source}


class BaselineMethod(MaskMethod):
    """A post-hoc baseline from :mod:`lmaczs.baselines` (target = the prompt's similarity logit)."""

    def __init__(self, key: str, **options):
        self.key = key
        self.label = LABELS.get(key, key)
        self.options = {**BASELINE_DEFAULTS.get(key, {}), **options}
        self.method = get_method(key, **self.options)

    def __call__(self, backend, x, text_emb, target, hidden=None):
        return self.method(backend, x, text_emb, target)

    def describe(self) -> dict:
        return {"key": self.key, **self.options}


def parse_methods(spec: str | Sequence[str]) -> list[str]:
    """``"lmaczs,gradcam++"`` (or a list) → validated method keys, in order, without duplicates."""
    names = [n.strip().lower() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    if names == ["all"]:
        return list(ALL_METHODS)
    bad = [n for n in names if n not in (LMACZS, ABLATION) and n not in BASELINES]
    if bad or not names:
        raise LmacError(f"unknown method(s) {bad or names}; choose from {', '.join(ALL_METHODS)} (or 'all')")
    return list(dict.fromkeys(names))


def build_methods(keys: Sequence[str], decoder: MaskDecoder | None, ablation: MaskDecoder | None = None,
                  options: dict[str, dict] | None = None, sources: dict[str, str] | None = None
                  ) -> dict[str, MaskMethod]:
    """Instantiate the methods named by ``keys`` (``options[key]`` overrides a baseline's defaults)."""
    options, sources = options or {}, sources or {}
    out: dict[str, MaskMethod] = {}
    for key in keys:
        if key == LMACZS:
            if decoder is None:
                raise LmacError("method lmaczs needs a trained decoder (pass --decoder RUN_DIR)")
            out[key] = LmacZsMethod(decoder, LMACZS, sources.get(LMACZS, ""))
        elif key == ABLATION:
            if ablation is None:
                raise LmacError(f"method {ABLATION} needs --ablation-decoder RUN_DIR (a second decoder to compare)")
            out[key] = LmacZsMethod(ablation, ABLATION, sources.get(ABLATION, ""))
        else:
            out[key] = BaselineMethod(key, **options.get(key, {}))
    return out
