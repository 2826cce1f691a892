"""Vanilla gradient saliency (Simonyan et al. 2014): |∂ logit_target / ∂X|, via captum ``Saliency``."""

from __future__ import annotations

from captum.attr import Saliency as _CaptumSaliency

from .base import SaliencyMethod, similarity_logits


def logits_fn(backend, text_emb):
    """The zero-shot head as a captum forward function: ``(B, T, F)`` → ``(B, P)`` logits."""
    return lambda z: similarity_logits(backend, z, text_emb)


class Saliency(SaliencyMethod):
    """``|∂ logit_target / ∂X|`` on the masking-domain grid. One forward + backward."""

    name = "saliency"

    def attribute(self, backend, x, text_emb, target):
        sal = _CaptumSaliency(logits_fn(backend, text_emb))
        return sal.attribute(x.clone().requires_grad_(True), target=target, abs=True)
