"""Mask methods behind one call, for evaluation: LMAC-ZS decoders and the post-hoc baselines.

>>> method = build_methods(["lmaczs", "gradcam++"], decoder, preset="standard")["gradcam++"]
>>> masks = method(backend, x, text_emb, target)     # (B, T, F) in [0, 1], detached
>>> method.extras()                                  # per-clip diagnostics of that call, e.g. IG's completeness

Baseline settings come in two presets (:data:`BASELINE_PRESETS`, ``lmac-zs evaluate --baseline-settings``):

- ``standard`` (the v3 tables): Integrated Gradients with 50 steps, SmoothGrad with 50 samples at
  σ = 0.15 · (max X − min X), ScoreCAM over the 64 most active channels of the last block (all 512 channels of
  the embedded model would cost 8× as much: ≈ 512 masked forwards per clip), GradCAM, GradCAM++, Saliency;
- ``reduced``: the settings of the earlier tables (IG 8 steps, SmoothGrad 4 samples at σ = 0.1, ScoreCAM 8
  channels), for quick runs.

A method masks in a *domain* (``stft`` or ``mel``); a decoder trained on mel masks (``--mel-decoder RUN``) is
evaluated on the same clips in the mel domain (:func:`in_domain`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch

from ..baselines import METHODS as BASELINES
from ..baselines import get_method
from ..clap import ClapBackend
from ..decoder import MaskDecoder
from ..errors import LmacError

LMACZS, ABLATION, MEL = "lmaczs", "lmaczs-ablation", "lmaczs-mel"  # decoders; ABLATION, MEL: compared beside
DECODERS = (LMACZS, ABLATION, MEL)

LABELS: dict[str, str] = {
    LMACZS: "LMAC-ZS", ABLATION: "LMAC-ZS (ablation)", MEL: "LMAC-ZS (mel)", "gradcam": "GradCAM",
    "gradcam++": "GradCAM++", "scorecam": "ScoreCAM", "saliency": "Saliency", "smoothgrad": "SmoothGrad",
    "ig": "IG",
}
ALL_METHODS: tuple[str, ...] = (LMACZS, "gradcam", "gradcam++", "scorecam", "saliency", "smoothgrad", "ig")

# Measured per clip with the embedded model's architecture on one core, in units of one batched forward F
# (≈ 0.08 s): IG ≈ 2F per step, SmoothGrad ≈ 1.5F per sample, ScoreCAM ≈ 1F per channel; GradCAM/GradCAM++
# ≈ 1F (their backward stops at the last block), Saliency ≈ 2F, LMAC-ZS's decoder < 1F. Internal batch sizes
# bound peak memory (SmoothGrad's noisy copies and IG's interpolation points run in chunks).
BASELINE_PRESETS: dict[str, dict[str, dict]] = {
    "standard": {
        "ig": {"steps": 50, "internal_batch_size": 16},
        "smoothgrad": {"samples": 50, "noise": 0.15, "seed": 0, "batch_size": 10},
        "scorecam": {"max_channels": 64, "batch_size": 32},
    },
    "reduced": {
        "ig": {"steps": 8, "internal_batch_size": 16},
        "smoothgrad": {"samples": 4, "noise": 0.1, "seed": 0},
        "scorecam": {"max_channels": 8, "batch_size": 16},
    },
}
PRESETS = tuple(BASELINE_PRESETS)
DEFAULT_PRESET = "standard"  # of `lmac-zs evaluate`; library calls default to "reduced" (the earlier settings)
BASELINE_DEFAULTS = BASELINE_PRESETS["reduced"]  # the name of the earlier tables' settings


@contextmanager
def in_domain(backend: ClapBackend, name: str) -> Iterator[ClapBackend]:
    """Temporarily switch ``backend``'s masking domain (``stft`` / ``mel``); restored on exit."""
    old = backend.domain_name
    backend.set_domain(name)
    try:
        yield backend
    finally:
        backend.set_domain(old)


class MaskMethod:
    """``method(backend, x (B, T, F), text_emb (P, D), target (B,)) → masks (B, T, F)`` in [0, 1].

    ``domain``: the masking domain ``x`` must be in (None: the backend's own). :meth:`extras` gives per-clip
    diagnostics of the last call (``{name: (B,)}``), e.g. Integrated Gradients' completeness error.
    """

    key: str
    label: str
    domain: str | None = None

    def __call__(self, backend: ClapBackend, x: torch.Tensor, text_emb: torch.Tensor, target: torch.Tensor,
                 hidden: list[torch.Tensor] | None = None) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"key": self.key}

    def extras(self) -> dict[str, torch.Tensor]:
        return {}


class LmacZsMethod(MaskMethod):
    """An LMAC-ZS decoder conditioned on the target prompt's text embedding.

    ``hidden`` (the backend's four representations of ``x``) may be passed to skip the forward pass.
    """

    def __init__(self, decoder: MaskDecoder, key: str = LMACZS, source: str = "", domain: str | None = None):
        self.decoder = decoder.eval()
        self.key = key
        self.label = LABELS.get(key, key)
        self.source = source
        self.domain = domain

    @torch.no_grad()
    def __call__(self, backend, x, text_emb, target, hidden=None):
        if hidden is None:
            hidden = backend.encode_spec(x).hidden
        target = torch.as_tensor(target, device=x.device).long().reshape(-1).expand(x.shape[0])
        return self.decoder(text_emb[target].to(x), hidden).detach()

    def describe(self) -> dict:
        return {"key": self.key, "decoder": self.source, **({"domain": self.domain} if self.domain else {})}


class BaselineMethod(MaskMethod):
    """A post-hoc baseline from :mod:`lmaczs.baselines` (target = the prompt's similarity logit)."""

    def __init__(self, key: str, preset: str = "reduced", **options):
        if preset not in BASELINE_PRESETS:
            raise LmacError(f"unknown baseline settings {preset!r}; choose from {', '.join(PRESETS)}")
        self.key = key
        self.label = LABELS.get(key, key)
        self.options = {**BASELINE_PRESETS[preset].get(key, {}), **options}
        self.method = get_method(key, **self.options)

    def __call__(self, backend, x, text_emb, target, hidden=None):
        return self.method(backend, x, text_emb, target)

    def describe(self) -> dict:
        return {"key": self.key, **self.options}

    def extras(self) -> dict[str, torch.Tensor]:
        return dict(getattr(self.method, "diagnostics", {}) or {})


def parse_methods(spec: str | Sequence[str]) -> list[str]:
    """``"lmaczs,gradcam++"`` (or a list) → validated method keys, in order, without duplicates."""
    names = [n.strip().lower() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    if names == ["all"]:
        return list(ALL_METHODS)
    bad = [n for n in names if n not in DECODERS and n not in BASELINES]
    if bad or not names:
        raise LmacError(f"unknown method(s) {bad or names}; choose from {', '.join(ALL_METHODS)} (or 'all')")
    return list(dict.fromkeys(names))


def check_preset(name: str) -> str:
    if name not in BASELINE_PRESETS:
        raise LmacError(f"unknown baseline settings {name!r}; choose from {', '.join(PRESETS)}")
    return name


def build_methods(keys: Sequence[str], decoder: MaskDecoder | None, ablation: MaskDecoder | None = None,
                  options: dict[str, dict] | None = None, sources: dict[str, str] | None = None, *,
                  preset: str = "reduced", mel: MaskDecoder | None = None) -> dict[str, MaskMethod]:
    """Instantiate the methods named by ``keys``: baselines at ``preset`` settings (``options[key]`` overrides
    them), LMAC-ZS decoders from ``decoder`` / ``ablation`` / ``mel`` (the last masks in the mel domain)."""
    options, sources = options or {}, sources or {}
    check_preset(preset)
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
        elif key == MEL:
            if mel is None:
                raise LmacError(f"method {MEL} needs --mel-decoder RUN_DIR (a decoder trained with --domain mel)")
            out[key] = LmacZsMethod(mel, MEL, sources.get(MEL, ""), domain="mel")
        else:
            out[key] = BaselineMethod(key, preset, **options.get(key, {}))
    return out


def baseline_settings(preset: str, options: dict[str, dict] | None = None) -> dict[str, dict]:
    """What every baseline runs with under ``preset`` and overrides (as recorded beside the results)."""
    return {k: m.describe() for k, m in build_methods([k for k in ALL_METHODS if k != LMACZS], None, None,
                                                       options, preset=preset).items()}
