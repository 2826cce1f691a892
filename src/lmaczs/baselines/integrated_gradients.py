"""Integrated Gradients (Sundararajan et al. 2017) from silence, via captum ``IntegratedGradients``."""

from __future__ import annotations

from captum.attr import IntegratedGradients as _CaptumIG

from .base import SaliencyMethod
from .saliency import logits_fn


class IntegratedGradients(SaliencyMethod):
    """``|(X − 0) · ∫₀¹ ∂ logit_target(αX) / ∂X dα|`` with ``steps`` Gauss–Legendre points (captum's default rule).

    The baseline X = 0 is silence in both masking domains (log1p|S| and mel power). ``internal_batch_size``
    bounds how many of the ``steps · B`` interpolated inputs go through the backend at once (None: all).
    Cost: ``steps`` forwards + backwards per clip.
    """

    name = "ig"

    def __init__(self, steps: int = 16, internal_batch_size: int | None = None):
        self.steps = steps
        self.internal_batch_size = internal_batch_size

    def attribute(self, backend, x, text_emb, target):
        ig = _CaptumIG(logits_fn(backend, text_emb))
        attr = ig.attribute(x.clone().requires_grad_(True), baselines=0.0, target=target, n_steps=self.steps,
                            internal_batch_size=self.internal_batch_size)
        return attr.abs()
