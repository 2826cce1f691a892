"""GradCAM (Selvaraju et al. 2017) on the last audio block, for the target prompt's similarity logit."""

from __future__ import annotations

import torch

from .base import CamMethod


def gradcam_map(hidden: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """``ReLU(Σ_c mean_{t,f}(∂y/∂A_c) · A_c)``: ``(B, C, T_k, F_k)`` ×2 → ``(B, T_k, F_k)``."""
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return (weights * hidden).sum(dim=1).relu()


class GradCam(CamMethod):
    """GradCAM on ``encode_spec(x).hidden[-1]``, upsampled bilinearly to ``(T, F)``. One forward + backward."""

    name = "gradcam"
    cam_map = staticmethod(gradcam_map)
