"""Post-hoc saliency baselines for zero-shot CLAP (paper-notes §5.3), one module per method on one base.

>>> method = get_method("gradcam++")
>>> mask = method(backend, x, text_emb, target)   # (B, T, F) in [0, 1]
"""

from __future__ import annotations

from ..errors import LmacError
from .base import SaliencyMethod, normalize_maps, similarity_logits
from .gradcam import GradCam
from .gradcam_pp import GradCamPlusPlus
from .integrated_gradients import IntegratedGradients
from .saliency import Saliency
from .scorecam import ScoreCam
from .smoothgrad import SmoothGrad

METHODS: dict[str, type[SaliencyMethod]] = {
    "gradcam": GradCam,
    "gradcam++": GradCamPlusPlus,
    "scorecam": ScoreCam,
    "saliency": Saliency,
    "smoothgrad": SmoothGrad,
    "ig": IntegratedGradients,
}


def get_method(name: str, **kwargs) -> SaliencyMethod:
    """Build a baseline by registry name (``gradcam``, ``gradcam++``, ``scorecam``, ``saliency``,
    ``smoothgrad``, ``ig``) with its keyword options."""
    try:
        cls = METHODS[name.lower()]
    except KeyError:
        raise LmacError(f"unknown saliency method {name!r}; choose from {', '.join(METHODS)}") from None
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise LmacError(f"bad options for saliency method {name!r}: {exc}") from None


__all__ = ["METHODS", "get_method", "SaliencyMethod", "GradCam", "GradCamPlusPlus", "ScoreCam", "Saliency",
           "SmoothGrad", "IntegratedGradients", "normalize_maps", "similarity_logits"]
