"""The LMAC-ZS objective L_ZS (paper Eq. 6–7), over all (text i, audio j) pairs of a batch.

    L = mean_ij |C_ij − t_iᵀ e_ij| + λ1 · mean(M) + λ2 · mean_{i≠j} |t_iᵀ t_j − e_iiᵀ e_ji|

with C_ij = t_iᵀ a_j the clean cosine similarity, e_ij = f_audio(M(t_i, h_j) ⊙ X_j) the unit-norm embedding of
audio j masked under text i, and D reusing the (j, i) passes: e_ji is audio i masked under text j. The paper writes
sums; we use means so λ1, λ2 do not depend on the batch size or the mask size (the L1 term as in L-MAC's code).
Embeddings are L2-normalised (cosine similarity, C ∈ [−1, 1]); the logit scale plays no part in the loss.

Silence baseline (our extension, ``baseline`` below): with b_i = t_iᵀ f_audio(0), the similarity of text i to an
empty (all-masked) input, the first term becomes mean_ij |max(C_ij − b_i, 0) − (t_iᵀ e_ij − b_i)|: the mask must
keep the *evidence for text i above silence*. A pair whose clean similarity is at or below silence level has target
0, which the empty mask reaches exactly, so the sparsity term drives unrelated prompts' masks towards empty. Without
it, a CLAP whose silence similarity varies across prompts as much as unrelated clips' similarities do (ours) is best
served by one prompt-agnostic mask that keeps the salient content for every prompt (docs/model-card.md).

Out term (our extension, after L-MAC's "out" loss, in zero-shot form): what the mask removes must lose the
evidence, mean_ij max(t_iᵀ r_ij − b_i, 0) with r_ij = f_audio((1 − M_ij) ⊙ X_j). L_ZS alone is satisfied by a mask
that keeps a second, unnamed source as well; with the out term and the L1 term the cheapest mask is the one that
covers exactly the evidence for text i. It is defined by the CLAP alone (no labels).

Source targets (our extension, ``reference`` below): for a synthetic mixture whose sources are known, the pair
(caption of source A, mixture) gets the target C_ij = t_iᵀ f_audio(A's contribution alone) — what the CLAP says
about the named source heard without the other — instead of t_iᵀ f_audio(X_j). Keeping the unnamed source then
falls short of the target wherever it lowers the similarity to text i, so the mask is pushed to drop it. The
target is still the CLAP's own similarity; the mixture's composition is known because we made it.

Source residuals (our extension, ``out_term`` with a per-pair baseline): the out term measured against silence asks
the residual of a mixture under source A's caption to hold no more evidence for A than an empty input — but this
CLAP gives most sounds some evidence above silence (source B alone: +0.15 on ESC-50 splices, against +0.56 for A
alone), so the out term pushes the mask to remove B as well. Measured against max(b_i, t_iᵀ f_audio(B alone)),
the residual may keep what B alone would give.

One-sided similarity (``similarity="hinge"``): mean_ij max(target_ij − kept_ij, 0). The absolute form also
penalises a masked input that is *more* similar to text i than the whole input — which is what removing a second,
unnamed source does under a cosine similarity — so it pulls masks towards keeping some of that source. The hinge
asks only that the evidence be kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SIMILARITIES = ("abs", "hinge")


@dataclass
class LossTerms:
    total: torch.Tensor
    similarity: torch.Tensor  # mean |C_ij − t_iᵀ e_ij|
    sparsity: torch.Tensor  # mean mask value (L1 of a [0, 1] mask)
    diversity: torch.Tensor  # mean_{i≠j} |t_iᵀ t_j − e_iiᵀ e_ji|
    out: torch.Tensor | None = None  # mean max(t_iᵀ r_ij − b_i, 0) of the residuals (None: not computed)

    FIELDS = ("total", "similarity", "sparsity", "diversity", "out")

    def as_floats(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in self.FIELDS if getattr(self, k) is not None}


def out_term(text: torch.Tensor, residual: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
    """Evidence left in what the masks removed: mean_ij max(t_iᵀ r_ij − b_ij, 0).

    Args:
        text: ``(B, D)`` unit-norm t_i.
        residual: ``(B, B, D)`` unit-norm r_ij = f_audio((1 − M(t_i, h_j)) ⊙ X_j).
        baseline: ``(B,)`` b_i = t_iᵀ f_audio(0), the same for every clip j; or ``(B, B)`` per pair (source
            residuals: the similarity of text i to the source of mixture j that it does not name, when higher).
    """
    level = baseline[:, None] if baseline.dim() == 1 else baseline
    left = torch.einsum("id,ijd->ij", text, residual) - level
    return left.clamp(min=0).mean()


def lzs_loss(text: torch.Tensor, audio: torch.Tensor, masked: torch.Tensor, masks: torch.Tensor,
             lambda1: float, lambda2: float, baseline: torch.Tensor | None = None,
             similarity: str = "abs", reference: torch.Tensor | None = None) -> LossTerms:
    """L_ZS for one batch.

    Args:
        text: ``(B, D)`` unit-norm text embeddings t_i.
        audio: ``(B, D)`` unit-norm embeddings a_j of the unmasked clips.
        masked: ``(B, B, D)`` unit-norm embeddings e_ij of audio j masked under text i.
        masks: ``(B, B, T, F)`` the masks M(t_i, h_j) (only their mean is used).
        lambda1: weight of the sparsity term.
        lambda2: weight of the diversity term (0 disables it; it needs B ≥ 2).
        baseline: optional ``(B,)`` similarities b_i of each text to the empty input; given, the first term
            compares evidence above silence (module docstring).
        similarity: ``"abs"`` (the paper's |target − kept|) or ``"hinge"`` (max(target − kept, 0)).
        reference: optional ``(B, B, D)`` unit-norm embeddings whose similarity to t_i is the target of pair
            (i, j) (source targets, module docstring); default a_j for every i.
    """
    clean = text @ audio.T if reference is None else torch.einsum("id,ijd->ij", text, reference)  # (B, B): C_ij
    kept = torch.einsum("id,ijd->ij", text, masked)  # t_iᵀ e_ij
    if baseline is not None:
        clean = (clean - baseline[:, None]).clamp(min=0)
        kept = kept - baseline[:, None]
    gap = clean - kept
    similarity = (gap.clamp(min=0) if similarity == "hinge" else gap.abs()).mean()
    sparsity = masks.mean()
    b = text.shape[0]
    if b > 1:
        own = masked.diagonal(dim1=0, dim2=1).T  # (B, D): e_ii
        # cross[j, i] = e_iiᵀ e_ji — audio i masked under its own text and under text j
        cross = torch.einsum("id,jid->ji", own, masked)
        target = text @ text.T
        off = ~torch.eye(b, dtype=torch.bool, device=text.device)
        diversity = (target - cross)[off].abs().mean()
    else:
        diversity = text.new_zeros(())
    total = similarity + lambda1 * sparsity + lambda2 * diversity
    return LossTerms(total, similarity, sparsity, diversity)
