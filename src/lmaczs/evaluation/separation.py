"""Separation by ear: how much of source A an explanation of A's prompt keeps, scored on the listenable audio.

On an overlapped mixture X = A + B (two held-out clips of different classes of one dataset, at 0 dB), the
explanation of A's prompt is ISTFT(expm1(M ⊙ log1p|S|) · e^{jφ}) and the residual is what the mask removes
(mixture − explanation). Both are scored by scale-invariant SDR (Le Roux et al. 2019) against the true sources;
the improvement (SI-SDRi) subtracts the mixture's own SI-SDR against the same source. The ceiling is the ideal
ratio mask |S_A| / (|S_A| + |S_B|) expressed in the masking domain (:func:`ideal_ratio_mask`, row ``irm``).

Every method explains A's prompt (its true class), whatever the model predicts on the mixture. A mel-domain
decoder's mask is spread back onto the linear bins (its audio is approximate); the ideal ratio mask always uses
the STFT domain.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Sequence

import torch

from ..clap.base import StftDomain
from ..datasets import Clip
from ..errors import DataError
from .conditions import mix_at_snr, seed_of
from .logs import SEPARATION, ResultLog
from .methods import in_domain

if TYPE_CHECKING:
    from .context import EvalContext

IRM = "irm"  # the ceiling row's key
SEPARATION_SNR_DB = 0.0


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Scale-invariant SDR in dB. ``(..., N)`` × 2 → ``(...)``; both are mean-removed first."""
    est = (estimate - estimate.mean(-1, keepdim=True)).double()
    ref = (reference - reference.mean(-1, keepdim=True)).double()
    scale = (est * ref).sum(-1, keepdim=True) / ref.pow(2).sum(-1, keepdim=True).clamp_min(eps)
    target = scale * ref
    noise = est - target
    return (10 * torch.log10(target.pow(2).sum(-1).clamp_min(eps) / noise.pow(2).sum(-1).clamp_min(eps))).float()


def ideal_ratio_mask(stft_a: torch.Tensor, stft_b: torch.Tensor, stft_mix: torch.Tensor) -> torch.Tensor:
    """The ideal ratio mask of source A as a mask on the STFT domain's X = log1p|S_mix|: the mask M for which
    expm1(M · X) = r · |S_mix| with r = |S_A| / (|S_A| + |S_B|). Complex ``(B, T, F)`` × 3 → ``(B, T, F)`` in
    [0, 1]."""
    ratio = stft_a.abs() / (stft_a.abs() + stft_b.abs()).clamp_min(1e-12)
    mag = stft_mix.abs()
    return (torch.log1p(ratio * mag) / torch.log1p(mag).clamp_min(1e-12)).clamp(0, 1)


def separation_pairs(clips: Sequence[Clip], pool: Sequence[Clip], seed: int = 0) -> list[tuple[Clip, Clip]]:
    """``(A, B)`` per clip A: B a pool clip of another class, drawn deterministically from A's name."""
    pool = sorted(pool, key=lambda c: c.filename)
    out = []
    for a in clips:
        others = [c for c in pool if c.class_key != a.class_key]
        if not others:
            raise DataError("the separation benchmark needs held-out clips of at least two classes")
        out.append((a, random.Random(seed_of(seed, "separation", a.filename)).choice(others)))
    return out


def score_separation(expl: torch.Tensor, wave: torch.Tensor, src_a: torch.Tensor, src_b: torch.Tensor
                     ) -> dict[str, torch.Tensor]:
    """SI-SDR of the explanation against A and of the residual against B, and their improvements over the
    mixture. All ``(B, N)`` → ``{name: (B,)}`` in dB."""
    base_a, base_b = si_sdr(wave, src_a), si_sdr(wave, src_b)
    sdr_a = si_sdr(expl, src_a)
    sdr_b = si_sdr(wave - expl, src_b)
    return {"sdr_a": sdr_a, "sdri_a": sdr_a - base_a, "sdr_b": sdr_b, "sdri_b": sdr_b - base_b}


def run_separation(ctx: "EvalContext", snr_db: float = SEPARATION_SNR_DB) -> dict:
    """Every method (and the ideal ratio mask) on the overlapped pairs of the evaluated clips
    (rows → ``separation.jsonl``, resumable). Returns ``{"items": n, "snr_db": snr_db}``."""
    backend, data = ctx.backend, ctx.data
    pairs = separation_pairs(data.clips, data.pool, ctx.seed)
    keys = ctx.keys + [IRM]
    log = ResultLog(ctx.out / SEPARATION, ("method", "clip"))
    todo = sum(not log.has(m, a.filename) for m in keys for a, _ in pairs)
    bar = ctx.progress_bar(todo, "separation")
    stft_domain = StftDomain(backend.front)
    for s in range(0, len(pairs), ctx.batch_size):
        batch = pairs[s:s + ctx.batch_size]
        pending = {m: [i for i, (a, _) in enumerate(batch) if not log.has(m, a.filename)] for m in keys}
        if not any(pending.values()):
            continue
        mixes = [mix_at_snr(ctx.cond.window(a.path), ctx.cond.window(b.path), snr_db) for a, b in batch]
        # the mixture is peak-normalised already, so the backend's normalisation keeps the sources' scale
        waves = backend.prepare(torch.stack([m.wave for m in mixes]).to(ctx.device))
        src_a = torch.stack([m.signal for m in mixes]).to(waves)
        src_b = torch.stack([m.noise for m in mixes]).to(waves)
        views = ctx.analyze(waves)
        main = views[ctx.primary]
        pred = (main.enc.embedding @ ctx.text.T.to(main.enc.embedding)).argmax(dim=1)
        targets = torch.tensor([data.index[a.target] for a, _ in batch], device=main.x.device)
        n = waves.shape[-1]
        for key in keys:
            idx = pending[key]
            if not idx:
                continue
            sel = torch.tensor(idx, device=main.x.device)
            with torch.no_grad():
                if key == IRM:
                    stft_a = backend.front.stft.forward(src_a[sel])
                    stft_b = backend.front.stft.forward(src_b[sel])
                    masks = ideal_ratio_mask(stft_a, stft_b, main.stft[sel])
                    expl = stft_domain.synthesize(masks, main.stft[sel], n)
                else:
                    masks = ctx.explain(key, views, idx, targets[sel])
                    with in_domain(backend, ctx.domain_of(key)):
                        expl = backend.domain.synthesize(masks, views[ctx.domain_of(key)].stft[sel], n)
                scores = score_separation(expl, waves[sel], src_a[sel], src_b[sel])
            mm = masks.flatten(1).mean(1)
            rows = []
            for j, i in enumerate(idx):
                a, b = batch[i]
                rows.append({"method": key, "clip": a.filename, "partner": b.filename, "target": data.index[a.target],
                             "partner_target": data.index[b.target], "pred": int(pred[i]),
                             **{k: _f(v[j]) for k, v in scores.items()}, "MM": _f(mm[j])})
            log.append(rows)
            bar.update(len(rows))
    bar.close()
    return {"items": len(pairs), "snr_db": snr_db}


def _f(v: torch.Tensor | float) -> float:
    v = float(v)
    return v if v == v and abs(v) != float("inf") else float("nan")
