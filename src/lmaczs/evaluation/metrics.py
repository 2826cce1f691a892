"""Faithfulness and mask-shape metrics of the LMAC-ZS tables, torch-native and batched.

Every metric returns one value per example, shape ``(B,)``, so callers can concatenate batches, resume, and
aggregate with :func:`summarize` (the paper's numbers are means over the test set).

Notation (paper-notes §5.2): ``p = softmax(logit_scale · a·tᵀ)`` over the *P* candidate prompts, for the clean
input X (``p``), the masked-in input M ⊙ X (``p_in``) and the masked-out input (1 − M) ⊙ X (``p_out``);
``c`` is the zero-shot prediction on the clean input. All probabilities are ``(B, P)``, ``c`` is ``(B,)`` long,
masks are ``(B, T, F)``.

==========  ===============================================  ========
metric      per example                                      better
==========  ===============================================  ========
AI          100 · 1[p_in_c > p_c]                            higher
AD          100 · max(0, p_c − p_in_c) / p_c                 lower
AG          100 · max(0, p_in_c − p_c) / (1 − p_c)           higher
FF          p_c − p_out_c                                    higher
Fid-In      1[argmax p_in = c]  (a fraction, not %)          higher
SPS         Gini index of the mask (Quantus 0.5.3)           higher
COMP        entropy of the mask's fractions (Quantus)        lower
MM          mean mask value                                  context
==========  ===============================================  ========

Deletion / insertion AUCs (Petsiuk et al. 2018) are extra; LMAC-ZS does not report them.
"""

from __future__ import annotations

import math
from typing import Callable, Literal, Sequence

import torch

EPS = 1e-10  # as SpeechBrain's interpreter_brain.py: keeps AD/AG finite at p_c = 0 or 1

ProbsFn = Callable[[torch.Tensor], torch.Tensor]


def _at(p: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``p[b, c[b]]``: ``(B, P)``, ``(B,)`` → ``(B,)``."""
    return p.gather(1, c.long().view(-1, 1).to(p.device)).squeeze(1)


# -- probability-based metrics --------------------------------------------------------------------------------
def average_increase(p: torch.Tensor, p_in: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """AI: ``100 · 1[p_in[c] > p[c]]``. Returns ``(B,)``."""
    return (_at(p_in, c) > _at(p, c)).to(p.dtype) * 100.0


def average_drop(p: torch.Tensor, p_in: torch.Tensor, c: torch.Tensor, *,
                 sb_double_softmax: bool = False) -> torch.Tensor:
    """AD: ``100 · max(0, p[c] − p_in[c]) / p[c]``. Returns ``(B,)``.

    SpeechBrain's ``compute_AD`` receives probabilities that are already softmaxed and applies ``softmax``
    once more (AI and AG do not), which squashes the values toward ``1/P`` and makes its AD much smaller
    than the definition. We follow the definition; ``sb_double_softmax=True`` reproduces SpeechBrain's
    numbers for comparison only.
    """
    if sb_double_softmax:
        p, p_in = p.softmax(dim=1), p_in.softmax(dim=1)
    pc, oc = _at(p, c), _at(p_in, c)
    return (pc - oc).clamp_min(0) / (pc + EPS) * 100.0


def average_gain(p: torch.Tensor, p_in: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """AG: ``100 · max(0, p_in[c] − p[c]) / (1 − p[c])``. Returns ``(B,)``."""
    pc, oc = _at(p, c), _at(p_in, c)
    return (oc - pc).clamp_min(0) / (1.0 - pc + EPS) * 100.0


def faithfulness(p: torch.Tensor, p_out: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """FF: ``p[c] − p_out[c]``, the drop when the explanation is removed. Returns ``(B,)``."""
    return _at(p, c) - _at(p_out, c)


def input_fidelity(p_in: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Fid-In: ``1[argmax p_in = c]`` as 0.0 / 1.0 (its mean is a fraction). Returns ``(B,)``."""
    return (p_in.argmax(dim=1) == c.to(p_in.device)).to(p_in.dtype)


# -- mask-shape metrics ---------------------------------------------------------------------------------------
def _flat_abs(masks: torch.Tensor) -> torch.Tensor:
    """``(B, ...)`` → ``(B, n)`` absolute values in float64 (sums over ~10⁵ elements)."""
    return masks.detach().reshape(masks.shape[0], -1).abs().double()


def sparseness(masks: torch.Tensor) -> torch.Tensor:
    """SPS: Gini index of each mask as Quantus 0.5.3 ``Sparseness``. ``(B, T, F)`` → ``(B,)``.

    Per example: flatten, abs, divide by the max, add 1e-7, sort ascending a_(1..n), then
    ``Σ_k (2k − n − 1)·a_(k) / (n · Σ_k a_(k))``. Differences: Quantus divides by the max over the whole
    batch it is handed (we divide per example, i.e. Quantus at batch size 1); an all-zero mask gives NaN
    because SpeechBrain never scores those (it skips them), and :func:`summarize` drops NaNs.
    """
    a = _flat_abs(masks)
    peak = a.amax(dim=1, keepdim=True)
    a = torch.where(peak > 0, a / peak.clamp_min(1e-300), a) + 1e-7
    a, _ = a.sort(dim=1)
    n = a.shape[1]
    k = torch.arange(1, n + 1, dtype=a.dtype, device=a.device)
    gini = ((2 * k - n - 1) * a).sum(dim=1) / (n * a.sum(dim=1))
    return torch.where(peak.squeeze(1) > 0, gini, torch.full_like(gini, math.nan)).to(masks.dtype)


def complexity(masks: torch.Tensor) -> torch.Tensor:
    """COMP: entropy (natural log) of ``|a| / Σ|a|`` per mask, as Quantus ``Complexity``. ``(B, T, F)`` → ``(B,)``.

    Zero entries contribute 0 (scipy's convention). An all-zero mask gives NaN, as in Quantus (0/0), and
    SpeechBrain drops those NaNs before averaging (so does :func:`summarize`).
    """
    a = _flat_abs(masks)
    q = a / a.sum(dim=1, keepdim=True)  # NaN row for an all-zero mask
    ent = -torch.where(q > 0, q * q.log(), torch.zeros_like(q)).sum(dim=1)
    ent = torch.where(q.isnan().any(dim=1), torch.full_like(ent, math.nan), ent)
    return ent.to(masks.dtype)


def mask_mean(masks: torch.Tensor) -> torch.Tensor:
    """MM: mean mask value. ``(B, T, F)`` → ``(B,)``."""
    return masks.detach().reshape(masks.shape[0], -1).mean(dim=1)


def per_example_metrics(p: torch.Tensor, p_in: torch.Tensor, p_out: torch.Tensor, c: torch.Tensor,
                        masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """All table metrics at once: keys AI, AD, AG, FF, Fid-In, SPS, COMP, MM, each ``(B,)``."""
    return {"AI": average_increase(p, p_in, c), "AD": average_drop(p, p_in, c),
            "AG": average_gain(p, p_in, c), "FF": faithfulness(p, p_out, c),
            "Fid-In": input_fidelity(p_in, c), "SPS": sparseness(masks), "COMP": complexity(masks),
            "MM": mask_mean(masks)}


# -- perturbation curves --------------------------------------------------------------------------------------
@torch.no_grad()
def perturbation_curve(probs_fn: ProbsFn, x: torch.Tensor, masks: torch.Tensor, c: torch.Tensor, *,
                       mode: Literal["deletion", "insertion"] = "deletion",
                       steps: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """``p_c`` while mask-ranked elements of X are removed from it, or inserted onto silence.

    The T×F elements are ranked by mask value, highest first (ties by flat index, so it is deterministic).
    At step k of ``steps`` the top ``round(k/steps · T·F)`` elements are set to zero (deletion) or are the
    only ones kept from X (insertion). Zero is silence in both masking domains (log1p|S| and mel power).

    Args:
        probs_fn: ``(B, T, F)`` → ``(B, P)`` probabilities (e.g. a closure over :func:`zero_shot_probs`).
        x: ``(B, T, F)`` masking-domain spectrogram. masks: ``(B, T, F)`` saliency. c: ``(B,)`` class index.
    Returns:
        ``fractions (steps+1,)`` in [0, 1] and ``probs (B, steps+1)``.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    b = x.shape[0]
    n = x[0].numel()
    order = torch.argsort(masks.reshape(b, -1), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=order.device).expand(b, n))
    rank = rank.view_as(x)
    fractions = torch.linspace(0.0, 1.0, steps + 1)
    curve = []
    for frac in fractions.tolist():
        top = rank < round(frac * n)  # the `round(frac·n)` highest-ranked elements
        keep = ~top if mode == "deletion" else top
        curve.append(_at(probs_fn(x * keep), c))
    return fractions.to(x.device), torch.stack(curve, dim=1)


def deletion_auc(probs_fn: ProbsFn, x: torch.Tensor, masks: torch.Tensor, c: torch.Tensor, *,
                 steps: int = 20) -> torch.Tensor:
    """Area (trapezoid rule, fraction on [0, 1]) under the deletion curve; lower is better. Returns ``(B,)``."""
    frac, probs = perturbation_curve(probs_fn, x, masks, c, mode="deletion", steps=steps)
    return torch.trapezoid(probs, frac, dim=1)


def insertion_auc(probs_fn: ProbsFn, x: torch.Tensor, masks: torch.Tensor, c: torch.Tensor, *,
                  steps: int = 20) -> torch.Tensor:
    """Area (trapezoid rule) under the insertion curve; higher is better. Returns ``(B,)``."""
    frac, probs = perturbation_curve(probs_fn, x, masks, c, mode="insertion", steps=steps)
    return torch.trapezoid(probs, frac, dim=1)


# -- aggregation and the zero-shot classifier -----------------------------------------------------------------
def summarize(per_example: dict[str, torch.Tensor | Sequence[torch.Tensor]]) -> dict[str, float]:
    """Mean of each metric over its examples, ignoring NaNs (all-zero masks' SPS/COMP, as SpeechBrain drops
    NaN COMP values before averaging). Values are ``(N,)`` tensors or lists of per-batch ``(B,)`` tensors.
    A metric whose values are all NaN (or empty) gives NaN."""
    out = {}
    for name, values in per_example.items():
        if isinstance(values, (list, tuple)):
            values = torch.cat([torch.as_tensor(v).reshape(-1).cpu() for v in values] or [torch.zeros(0)])
        v = torch.as_tensor(values).detach().cpu().double().reshape(-1)
        v = v[~v.isnan()]
        out[name] = float(v.mean()) if v.numel() else math.nan
    return out


def zero_shot_probs(backend, x: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """``softmax(logit_scale · encode_spec(x).embedding @ text_embᵀ)``: ``(B, T, F)``, ``(P, D)`` → ``(B, P)``.

    Runs with whatever grad mode the caller has (wrap it in ``torch.no_grad()`` for metrics).
    """
    emb = backend.encode_spec(x).embedding
    return (backend.logit_scale * emb @ text_emb.to(emb).T).softmax(dim=-1)
