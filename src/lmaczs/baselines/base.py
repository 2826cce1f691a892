"""The shared base of the saliency baselines (paper-notes §5.3).

The zero-shot classifier is treated as a classifier head over all candidate prompts::

    logits = logit_scale · encode_spec(X).embedding @ text_embᵀ      (B, P)

and every method explains the logit of the target prompt (usually the prediction ĉ) with respect to the
masking-domain spectrogram X (or, for the CAM family, the last audio block ``encode_spec(X).hidden[-1]``).
Maps are resized to X's ``(T, F)`` grid and min–max normalised per example into [0, 1] (0 where constant).
No method changes the backend: gradients are taken with ``torch.autograd.grad`` w.r.t. a detached copy of X
only (no hooks, no ``.grad`` on parameters), and backends always stay in eval mode.
"""

from __future__ import annotations

from typing import Union

import torch
import torch.nn.functional as F

from ..clap.base import AudioEncoding, ClapBackend
from ..errors import LmacError

Target = Union[int, torch.Tensor]


def similarity_logits(backend: ClapBackend, x: torch.Tensor, text_emb: torch.Tensor,
                      encoding: AudioEncoding | None = None) -> torch.Tensor:
    """``(B, T, F)`` X, ``(P, D)`` prompts → ``(B, P)`` logits ``logit_scale · emb @ text_embᵀ``."""
    enc = backend.encode_spec(x) if encoding is None else encoding
    return backend.logit_scale * enc.embedding @ text_emb.to(enc.embedding).T


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min–max normalise each ``(B, T, F)`` map into [0, 1]; a constant map becomes all zeros."""
    lo = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - lo
    return torch.where(span > 0, (maps - lo) / span.clamp_min(torch.finfo(maps.dtype).tiny),
                       torch.zeros_like(maps))


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize ``(B, C, T_k, F_k)`` → ``(B, C, T, F)`` (align_corners=False)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


class SaliencyMethod:
    """A post-hoc saliency baseline. Subclasses implement :meth:`attribute` (raw, non-negative maps)."""

    name: str = "base"

    def __call__(self, backend: ClapBackend, x: torch.Tensor, text_emb: torch.Tensor,
                 target: Target) -> torch.Tensor:
        """Explain the target prompt's logit.

        Args:
            backend: a frozen CLAP backend (only ``encode_spec`` and ``logit_scale`` are used).
            x: ``(B, T, F)`` masking-domain spectrogram.
            text_emb: ``(P, D)`` embeddings of all candidate prompts.
            target: ``(B,)`` long prompt indices (or one int for the whole batch).
        Returns:
            ``(B, T, F)`` mask in [0, 1] on X's grid, detached.
        """
        if x.dim() != 3:
            raise LmacError(f"{self.name}: x must be (B, T, F), got shape {tuple(x.shape)}")
        target = torch.as_tensor(target, device=x.device).long().reshape(-1)
        if target.numel() not in (1, x.shape[0]):
            raise LmacError(f"{self.name}: got {target.numel()} targets for {x.shape[0]} clips")
        target = target.expand(x.shape[0])
        if text_emb.dim() != 2 or not ((target >= 0) & (target < text_emb.shape[0])).all():
            raise LmacError(f"{self.name}: targets must index the {text_emb.shape[0]} prompts of text_emb (P, D)")
        x = x.detach()
        with torch.enable_grad():
            raw = self.attribute(backend, x, text_emb.detach(), target.contiguous())
        return normalize_maps(raw.detach().to(x.dtype))

    def attribute(self, backend: ClapBackend, x: torch.Tensor, text_emb: torch.Tensor,
                  target: torch.Tensor) -> torch.Tensor:
        """Raw ``(B, T, F)`` map before normalisation."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def target_logit_and_hidden(backend: ClapBackend, x: torch.Tensor, text_emb: torch.Tensor,
                            target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward once: the target logits ``(B,)`` and the last hidden block ``(B, C, T_k, F_k)`` in the graph."""
    enc = backend.encode_spec(x.clone().requires_grad_(True))
    logits = similarity_logits(backend, x, text_emb, encoding=enc)
    return logits.gather(1, target.view(-1, 1)).squeeze(1), enc.hidden[-1]


def grad_wrt(output: torch.Tensor, wrt: torch.Tensor, method: str) -> torch.Tensor:
    """``∂ Σ output / ∂ wrt`` (examples are independent in eval mode, so the sum gives per-example grads)."""
    (g,) = torch.autograd.grad(output.sum(), wrt, allow_unused=True)
    if g is None:
        raise LmacError(f"{method}: the backend's last hidden block is not on the embedding's path; "
                        "this backend cannot be explained with a CAM method")
    return g


class CamMethod(SaliencyMethod):
    """A class-activation map on the last audio block: subclasses give ``cam_map(A, ∂y/∂A) -> (B, T_k, F_k)``;
    the map is upsampled bilinearly to ``(T, F)``. One forward + backward."""

    @staticmethod
    def cam_map(hidden: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def attribute(self, backend, x, text_emb, target):
        y, hidden = target_logit_and_hidden(backend, x, text_emb, target)
        cam = self.cam_map(hidden, grad_wrt(y, hidden, self.name))
        return upsample(cam.unsqueeze(1), tuple(x.shape[1:])).squeeze(1)
