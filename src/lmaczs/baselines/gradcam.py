"""GradCAM (Selvaraju et al. 2017) on the last audio block, for the target prompt's similarity logit."""

from __future__ import annotations

import torch

from .base import SaliencyMethod, grad_wrt, target_logit_and_hidden, upsample


def gradcam_map(hidden: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """``ReLU(Σ_c mean_{t,f}(∂y/∂A_c) · A_c)``: ``(B, C, T_k, F_k)`` ×2 → ``(B, T_k, F_k)``."""
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return (weights * hidden).sum(dim=1).relu()


class GradCam(SaliencyMethod):
    """GradCAM on ``encode_spec(x).hidden[-1]``, upsampled bilinearly to ``(T, F)``. One forward + backward."""

    name = "gradcam"

    def attribute(self, backend, x, text_emb, target):
        y, hidden = target_logit_and_hidden(backend, x, text_emb, target)
        cam = gradcam_map(hidden, grad_wrt(y, hidden, self.name))
        return upsample(cam.unsqueeze(1), tuple(x.shape[1:])).squeeze(1)
