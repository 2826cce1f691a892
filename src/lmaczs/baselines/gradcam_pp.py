"""GradCAM++ (Chattopadhay et al. 2018) on the last audio block, for the target prompt's similarity logit."""

from __future__ import annotations

import torch

from .base import CamMethod


def gradcam_pp_map(hidden: torch.Tensor, grads: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """GradCAM++ map ``(B, T_k, F_k)`` from ``A, ∂y/∂A`` of shape ``(B, C, T_k, F_k)``.

    With the usual exponential-score closed form (only first-order gradients g are needed):
    ``α = g² / (2g² + Σ_{t,f}A · g³)`` (0 where g = 0), ``w_c = Σ_{t,f} α · ReLU(g)``,
    map ``= ReLU(Σ_c w_c A_c)``.
    """
    g2 = grads.pow(2)
    denom = 2 * g2 + hidden.sum(dim=(2, 3), keepdim=True) * g2 * grads
    alpha = torch.where(grads != 0, g2 / (denom + eps), torch.zeros_like(grads))
    weights = (alpha * grads.relu()).sum(dim=(2, 3), keepdim=True)
    return (weights * hidden).sum(dim=1).relu()


class GradCamPlusPlus(CamMethod):
    """GradCAM++ on ``encode_spec(x).hidden[-1]``, upsampled bilinearly to ``(T, F)``. One forward + backward."""

    name = "gradcam++"
    cam_map = staticmethod(gradcam_pp_map)
