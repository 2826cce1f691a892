"""SmoothGrad (Smilkov et al. 2017): gradient saliency averaged over noisy copies of X, via captum
``NoiseTunnel(Saliency)``."""

from __future__ import annotations

import torch
from captum.attr import NoiseTunnel
from captum.attr import Saliency as _CaptumSaliency

from .base import SaliencyMethod
from .saliency import logits_fn


class SmoothGrad(SaliencyMethod):
    """Mean of ``|∂ logit_target / ∂(X + ε)|`` over ``samples`` draws ε ~ N(0, σ²),
    σ = ``noise`` · (max X − min X) per clip.

    Defaults: 8 samples, noise level 0.1 (Smilkov et al. suggest 10–20 %). The noise is drawn from
    ``seed`` with the global RNG forked (the caller's RNG state is untouched). Each example is attributed
    on its own, from the same seed, so a clip's map does not depend on what else is in the batch (captum
    draws one noise tensor for the whole batch); its ``samples`` noisy copies run in batches of ``batch_size``
    (None: all at once), which bounds peak memory; the noise is then drawn chunk by chunk, so a map depends on
    ``batch_size`` too (deterministically).
    Cost: ``samples`` forwards + backwards per clip.
    """

    name = "smoothgrad"

    def __init__(self, samples: int = 8, noise: float = 0.1, seed: int = 0, batch_size: int | None = None):
        self.samples = samples
        self.noise = noise
        self.seed = seed
        self.batch_size = batch_size

    def attribute(self, backend, x, text_emb, target):
        tunnel = NoiseTunnel(_CaptumSaliency(logits_fn(backend, text_emb)))
        out = []
        for xb, tb in zip(x, target):
            sigma = self.noise * float(xb.max() - xb.min())
            devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.seed)
                out.append(tunnel.attribute(xb[None].clone().requires_grad_(True), nt_type="smoothgrad",
                                            nt_samples=self.samples, nt_samples_batch_size=self.batch_size,
                                            stdevs=sigma, target=tb[None], abs=True))
        return torch.cat(out)
