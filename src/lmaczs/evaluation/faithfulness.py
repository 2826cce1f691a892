"""The faithfulness part of the evaluation (paper Tables 1–2): every method on every clip under every condition.

ĉ is the zero-shot prediction on the unmasked input; LMAC-ZS is conditioned on ĉ's prompt and the baselines
explain ĉ's similarity logit. Masked-in (M ⊙ X) and masked-out ((1 − M) ⊙ X) spectrograms go back through the
backend (InputTf) and the per-example metrics of :mod:`.metrics` are appended, one JSON line per
(condition, method, clip), to ``results.jsonl``; a rerun skips the lines already there. Per-clip diagnostics of a
method (Integrated Gradients' completeness error) are stored in its lines too.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Sequence

import torch

from ..clap import ClapBackend
from .logs import RESULTS, ResultLog
from .methods import MaskMethod, in_domain
from .metrics import deletion_auc, insertion_auc, per_example_metrics, zero_shot_probs

if TYPE_CHECKING:
    from .context import EvalContext


def _f(v: torch.Tensor | float) -> float:
    v = float(v)
    return v if math.isfinite(v) else float("nan")


def _curve_probs(backend: ClapBackend, text: torch.Tensor, x: torch.Tensor, p_clean: torch.Tensor,
                 p_zero: torch.Tensor):
    """``probs_fn`` for the deletion/insertion curves that reuses the clean input's probabilities and
    silence's (the curves' end points, identical for every method) instead of recomputing them."""

    def fn(z: torch.Tensor) -> torch.Tensor:
        out = torch.empty(z.shape[0], p_clean.shape[1], device=z.device, dtype=p_clean.dtype)
        same = (z == x).flatten(1).all(1)
        zero = (z == 0).flatten(1).all(1) & ~same
        rest = ~(same | zero)
        out[same] = p_clean[same]
        out[zero] = p_zero.expand(int(zero.sum()), -1)
        if rest.any():
            out[rest] = zero_shot_probs(backend, z[rest], text)
        return out

    return fn


@torch.no_grad()
def classify_batch(backend: ClapBackend, x: torch.Tensor, text: torch.Tensor):
    """The unmasked forward: ``(encoding, p (B, P), ĉ (B,))`` for ``x (B, T, F)``."""
    enc = backend.encode_spec(x)
    p = (backend.logit_scale * enc.embedding @ text.T.to(enc.embedding)).softmax(dim=-1)
    return enc, p, p.argmax(dim=1)


@torch.no_grad()
def score_method(backend: ClapBackend, method: MaskMethod, idx: Sequence[int], x: torch.Tensor, enc, p: torch.Tensor,
                 c: torch.Tensor, text: torch.Tensor, p_zero: torch.Tensor, curve_steps: int
                 ) -> tuple[dict[str, torch.Tensor], float, float]:
    """Explain rows ``idx`` of a batch with one method and score them (in the backend's current domain).

    Args:
        x: ``(B, T, F)``; enc, p: :func:`classify_batch` of x; c: ``(B,)`` the explained class; text: ``(P, D)``;
            p_zero: ``(1, P)`` probabilities of silence.
    Returns:
        ``(metrics {name: (n,)}, mask seconds per clip, total seconds per clip)``; the metrics include the
        method's per-clip diagnostics (:meth:`MaskMethod.extras`).
    """
    sel = torch.tensor(list(idx), device=x.device)
    xs, cs, ps = x[sel], c[sel], p[sel]
    t0 = time.perf_counter()
    masks = method(backend, xs, text, cs, hidden=[h[sel] for h in enc.hidden])
    t_mask = time.perf_counter() - t0
    extras = method.extras()
    p_in = zero_shot_probs(backend, masks * xs, text)
    p_out = zero_shot_probs(backend, (1 - masks) * xs, text)
    values = per_example_metrics(ps, p_in, p_out, cs, masks)
    if curve_steps > 0:
        fn = _curve_probs(backend, text, xs, ps, p_zero)
        values["del_auc"] = deletion_auc(fn, xs, masks, cs, steps=curve_steps)
        values["ins_auc"] = insertion_auc(fn, xs, masks, cs, steps=curve_steps)
    values["p_pred"] = ps.gather(1, cs[:, None]).squeeze(1)
    values["p_in"] = p_in.gather(1, cs[:, None]).squeeze(1)
    values["p_out"] = p_out.gather(1, cs[:, None]).squeeze(1)
    values.update(extras)
    return values, t_mask / len(idx), (time.perf_counter() - t0) / len(idx)


def run_faithfulness(ctx: "EvalContext", conditions: Sequence[str], curve_steps: int,
                     curve_conditions: Sequence[str]) -> float:
    """Fill ``results.jsonl`` for every (condition, method, clip) not there yet. Returns the wall seconds spent."""
    backend, data = ctx.backend, ctx.data
    clips = data.clips
    log = ResultLog(ctx.out / RESULTS, ("condition", "method", "clip"))
    with torch.no_grad():
        p_zero = {}
        for d in ctx.domains:
            with in_domain(backend, d):
                t, f = backend.mask_shape()
                p_zero[d] = zero_shot_probs(backend, torch.zeros(1, t, f, device=ctx.device), ctx.text)
    todo = sum(not log.has(c, m, clip.filename) for c in conditions for m in ctx.keys for clip in clips)
    bar = ctx.progress_bar(todo, "evaluating")
    started = time.perf_counter()
    for condition in conditions:
        steps = curve_steps if condition in curve_conditions else 0
        for s in range(0, len(clips), ctx.batch_size):
            batch = clips[s:s + ctx.batch_size]
            pending = {m: [i for i, clip in enumerate(batch) if not log.has(condition, m, clip.filename)]
                       for m in ctx.keys}
            if not any(pending.values()):
                continue
            made = [ctx.cond.apply(condition, clip) for clip in batch]
            views = ctx.analyze(torch.stack([w for w, _ in made]))
            with torch.no_grad():  # the encodings of the views are the unmasked forwards
                probs = {d: (backend.logit_scale * v.enc.embedding @ ctx.text.T.to(v.enc.embedding)).softmax(dim=-1)
                         for d, v in views.items()}
            c = probs[ctx.primary].argmax(dim=1)  # ĉ of the backend's own domain, for every method
            for key in ctx.keys:  # one method at a time, each written as soon as it is done
                if not pending[key]:
                    continue
                d = ctx.domain_of(key)
                with in_domain(backend, d):
                    values, t_mask, t_total = score_method(backend, ctx.methods[key], pending[key], views[d].x,
                                                           views[d].enc, probs[d], c, ctx.text, p_zero[d], steps)
                rows = []
                for j, i in enumerate(pending[key]):
                    clip = batch[i]
                    label = data.index[clip.target]
                    rows.append({"condition": condition, "method": key, "clip": clip.filename, "label": label,
                                 "pred": int(c[i]), "correct": int(c[i]) == label, "contaminant": made[i][1],
                                 **{k: _f(v[j]) for k, v in values.items()},
                                 "mask_s": t_mask, "total_s": t_total})
                log.append(rows)
                bar.update(len(rows))
    bar.close()
    return time.perf_counter() - started
