"""Integrated Gradients (Sundararajan et al. 2017) from silence, via captum ``IntegratedGradients``."""

from __future__ import annotations

import torch
from captum.attr import IntegratedGradients as _CaptumIG

from .base import SaliencyMethod, similarity_logits
from .saliency import logits_fn


def completeness_error(attr: torch.Tensor, f_x: torch.Tensor, f_base: torch.Tensor) -> torch.Tensor:
    """``|Σ attr − (f(X) − f(baseline))| / |f(X) − f(baseline)|`` per example: how far the attributions are from
    adding up to the change of the explained logit (0 for exact integration). ``attr (B, ...)``, ``f_x (B,)``,
    ``f_base (B,)`` → ``(B,)`` (inf where the logit does not change but the attributions do not sum to 0)."""
    gap = (f_x - f_base).double()
    delta = attr.detach().reshape(attr.shape[0], -1).double().sum(dim=1) - gap
    return (delta.abs() / gap.abs()).float()


class IntegratedGradients(SaliencyMethod):
    """``|(X − 0) · ∫₀¹ ∂ logit_target(αX) / ∂X dα|`` with ``steps`` Gauss–Legendre points (captum's default rule).

    The baseline X = 0 is silence in both masking domains (log1p|S| and mel power). ``internal_batch_size``
    bounds how many of the ``steps · B`` interpolated inputs go through the backend at once (None: all).
    After each call, ``diagnostics["ig_completeness"]`` holds the completeness error of the signed attributions
    per example (:func:`completeness_error`; two extra forwards, at X and at silence).
    Cost: ``steps`` forwards + backwards per clip.
    """

    name = "ig"

    def __init__(self, steps: int = 16, internal_batch_size: int | None = None):
        self.steps = steps
        self.internal_batch_size = internal_batch_size
        self.diagnostics: dict[str, torch.Tensor] = {}

    def attribute(self, backend, x, text_emb, target):
        ig = _CaptumIG(logits_fn(backend, text_emb))
        attr = ig.attribute(x.clone().requires_grad_(True), baselines=0.0, target=target, n_steps=self.steps,
                            internal_batch_size=self.internal_batch_size)
        with torch.no_grad():
            ends = similarity_logits(backend, torch.cat([x, torch.zeros_like(x)]), text_emb)
            pick = torch.cat([target, target]).view(-1, 1)
            f_x, f_0 = ends.gather(1, pick).squeeze(1).split(x.shape[0])
        self.diagnostics = {"ig_completeness": completeness_error(attr, f_x, f_0).cpu()}
        return attr.abs()

    def __repr__(self) -> str:
        return f"IntegratedGradients(steps={self.steps!r}, internal_batch_size={self.internal_batch_size!r})"
