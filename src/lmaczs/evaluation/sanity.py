"""Sanity checks of explanations (paper-notes §5.4): is a mask about the prompt, and about the model?

1. **Mask mean vs similarity** — over many (clip, prompt) pairs, the Spearman ρ between an explanation's mask
   mean and the CLAP similarity of prompt and audio (the paper's Fig. 3: LMAC-ZS correlates, GradCAM++ not).
2. **Unrelated-prompt shut-off** — mask mean for the predicted prompt vs a random other class's prompt, and
   the SSIM between the two masks (Fig. 4: LMAC-ZS "shuts off"; GradCAM++ barely changes).
3. **Cascading randomisation** (Adebayo et al. 2018) — re-initialise the audio encoder's blocks top down
   (deepest first, cumulatively) on a deep copy of the backend and measure the SSIM of each explanation to the
   original one (Fig. 3 right: a faithful method's SSIM falls).
4. **Prompt randomisation** — explain the same target index with the prompt embeddings shuffled (a
   derangement: every class gets another class's text) and measure the SSIM to the original explanation.

SSIM follows Wang et al. (2004): 11×11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03, data range 1 (masks
are in [0, 1]), computed over the valid window positions and averaged; no sample-covariance correction.
"""

from __future__ import annotations

import copy
import math
import random
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..clap import ClapBackend
from ..errors import BackendError
from .conditions import seed_of
from .methods import LABELS, MaskMethod

SANITY_METHODS = ("lmaczs", "lmaczs-ablation", "gradcam++")


# -- SSIM and Spearman --------------------------------------------------------------------------------------
def gaussian_window(size: int = 11, sigma: float = 1.5, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Normalised 1-D Gaussian ``(size,)``."""
    k = torch.arange(size, dtype=dtype) - (size - 1) / 2
    w = torch.exp(-(k ** 2) / (2 * sigma ** 2))
    return w / w.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 1.0, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean structural similarity of image pairs. ``(B, H, W)`` or ``(H, W)`` × 2 → ``(B,)`` or scalar.

    Identical images give exactly 1. Images smaller than the window use the largest odd window that fits.
    """
    if a.shape != b.shape or a.dim() not in (2, 3):
        raise ValueError(f"ssim needs two (H, W) or (B, H, W) tensors of one shape, got {tuple(a.shape)}, "
                         f"{tuple(b.shape)}")
    single = a.dim() == 2
    a = a.detach().double().reshape(-1, 1, *a.shape[-2:])
    b = b.detach().double().reshape(-1, 1, *b.shape[-2:]).to(a.device)
    size = min(window, a.shape[-2], a.shape[-1])
    size -= (size + 1) % 2  # odd
    w = gaussian_window(size, sigma).to(a.device)
    wt, wf = w.view(1, 1, -1, 1), w.view(1, 1, 1, -1)

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(z, wt), wf)

    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)
    out = (num / den).mean(dim=(1, 2, 3)).float()
    return out[0] if single else out


def rankdata(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (scipy's ``rankdata(method="average")``)."""
    v = np.asarray(values, dtype=float)
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v), dtype=float)
    sorted_v = v[order]
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation (Pearson of average ranks); NaN when either side is constant or n < 2."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("spearman needs two 1-D sequences of one length")
    if len(x) < 2:
        return math.nan
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float((rx ** 2).sum() * (ry ** 2).sum()))
    return float((rx * ry).sum() / den) if den > 0 else math.nan


# -- randomisation ------------------------------------------------------------------------------------------
def reinitialize_(module: nn.Module, seed: int) -> int:
    """Re-initialise every sub-module that has ``reset_parameters`` (BatchNorm also resets its running
    statistics) from ``seed``, without touching the global RNG. Returns how many sub-modules were reset."""
    n = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.no_grad():
            for m in module.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
                    n += 1
    return n


def cascading_randomizations(backend: ClapBackend, seed: int = 0):
    """Yield ``(k, randomised backend)`` for k = 1..L: a deep copy of ``backend`` whose k deepest blocks
    (of :meth:`ClapBackend.randomizable_blocks`) are re-initialised. The original is untouched."""
    backend.randomizable_blocks()  # fail before copying when the backend does not support it
    model = copy.deepcopy(backend)
    blocks = model.randomizable_blocks()
    for k, block in enumerate(reversed(blocks), start=1):
        if reinitialize_(block, seed_of(seed, "randomise", len(blocks) - k)) == 0:
            raise ValueError(f"block {len(blocks) - k} of {backend.spec} has no parameters to re-initialise")
        yield k, model


def derangement(n: int, seed: int) -> list[int]:
    """A permutation of ``range(n)`` with no fixed point (n ≥ 2), deterministic in ``seed``."""
    rng = random.Random(seed)
    while True:
        perm = list(range(n))
        rng.shuffle(perm)
        if all(i != p for i, p in enumerate(perm)):
            return perm


# -- the checks ---------------------------------------------------------------------------------------------
def _chunked(method: MaskMethod, backend: ClapBackend, x: torch.Tensor, text: torch.Tensor,
             target: torch.Tensor, batch: int, hidden: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Masks for ``x (N, T, F)`` in chunks; ``hidden`` (x's representations) spares LMAC-ZS a forward."""
    return torch.cat([method(backend, x[s:s + batch], text, target[s:s + batch],
                             hidden=None if hidden is None else [h[s:s + batch] for h in hidden])
                      for s in range(0, x.shape[0], batch)])


def _mean_sem(v: Sequence[float] | torch.Tensor) -> tuple[float, float]:
    a = np.asarray(torch.as_tensor(v).double().cpu(), dtype=float).reshape(-1)
    a = a[~np.isnan(a)]
    if not len(a):
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else math.nan


def choose_pairs(sim: torch.Tensor, labels: torch.Tensor, per_clip: int, seed: int
                 ) -> tuple[list[tuple[int, int]], torch.Tensor, torch.Tensor]:
    """(clip, prompt) pairs covering the similarity range: per clip the predicted prompt, one unrelated
    prompt (neither predicted nor the true class, drawn at random) and prompts at evenly spaced similarity
    ranks. Returns ``(pairs, predicted (K,), unrelated (K,))``."""
    k_clips, p = sim.shape
    pred = sim.argmax(dim=1)
    unrelated = []
    pairs: list[tuple[int, int]] = []
    for k in range(k_clips):
        rng = random.Random(seed_of(seed, "unrelated", k))
        choices = [j for j in range(p) if j != int(pred[k]) and j != int(labels[k])] or \
                  [j for j in range(p) if j != int(pred[k])]
        u = rng.choice(choices)
        unrelated.append(u)
        chosen = [int(pred[k]), u]
        rest = [j for j in sim[k].argsort(descending=True).tolist() if j not in chosen]
        n_rest = min(max(per_clip - 2, 0), len(rest))
        chosen += [rest[r] for r in np.linspace(0, len(rest) - 1, n_rest).round().astype(int)]
        pairs += [(k, j) for j in chosen]
    return pairs, pred, torch.tensor(unrelated)


def run_sanity(backend: ClapBackend, methods: dict[str, MaskMethod], x: torch.Tensor, labels: torch.Tensor,
               text: torch.Tensor, prompts: Sequence[str], out_dir: str | Path, *, seed: int = 0,
               prompts_per_clip: int = 8, batch: int = 8, names: Sequence[str] | None = None,
               progress: bool = True) -> dict:
    """Run the four checks on clips ``x (K, T, F)`` (true class indices ``labels (K,)``) with prompt
    embeddings ``text (P, D)``; write the figures into ``out_dir``. Returns the numbers (JSON-able)."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        encs = [backend.encode_spec(x[s:s + batch]) for s in range(0, len(x), batch)]
        emb = torch.cat([e.embedding for e in encs])
        hidden = [torch.cat(hs) for hs in zip(*(e.hidden for e in encs))]  # 4 × (K, C, T_k, F_k)
        sim = emb @ text.T.to(emb)  # cosine similarity (K, P)
    pairs, pred, unrelated = choose_pairs(sim, labels, prompts_per_clip, seed)
    pk = torch.tensor([k for k, _ in pairs])
    pj = torch.tensor([j for _, j in pairs])
    perm = torch.tensor(derangement(len(prompts), seed_of(seed, "prompts")))
    try:
        n_blocks = len(backend.randomizable_blocks())
        skipped = None
    except BackendError as exc:  # the other checks still run; the report says why this one did not
        n_blocks, skipped = 0, str(exc)
    steps = len(methods) * (3 + n_blocks)
    bar = tqdm(total=steps, desc="sanity checks", disable=not progress, unit="check")
    result: dict = {"clips": int(x.shape[0]), "pairs": len(pairs), "prompts_per_clip": prompts_per_clip,
                    "methods": list(methods), "similarity": {}, "shutoff": {}, "cascading": {},
                    "prompt_randomisation": {}}
    pair_mm: dict[str, torch.Tensor] = {}
    original: dict[str, torch.Tensor] = {}
    shut: dict[str, torch.Tensor] = {}
    for key, method in methods.items():
        # 1. mask mean over all pairs (the predicted-prompt masks are kept as the originals)
        mm = torch.empty(len(pairs))
        for s in range(0, len(pairs), batch):
            rows = pk[s:s + batch]
            masks = method(backend, x[rows], text, pj[s:s + batch], hidden=[h[rows] for h in hidden])
            mm[s:s + batch] = masks.flatten(1).mean(1).cpu()
        pair_mm[key] = mm
        result["similarity"][key] = {"spearman": spearman(mm.numpy(), sim[pk, pj].cpu().numpy()),
                                     "pairs": len(pairs)}
        bar.update(1)
        # 2. predicted vs unrelated prompt
        original[key] = _chunked(method, backend, x, text, pred, batch, hidden).cpu()
        shut[key] = _chunked(method, backend, x, text, unrelated, batch, hidden).cpu()
        mm_p, mm_u = original[key].flatten(1).mean(1), shut[key].flatten(1).mean(1)
        ssim_shut = ssim(original[key], shut[key])
        m, e = _mean_sem(ssim_shut)
        result["shutoff"][key] = {
            "mm_pred": float(mm_p.mean()), "mm_unrelated": float(mm_u.mean()),
            "ratio": float(mm_u.mean() / mm_p.mean()) if float(mm_p.mean()) > 0 else math.nan,
            "frac_lower": float((mm_u < mm_p).double().mean()), "ssim": m, "ssim_sem": e,
            "per_clip": {"mm_pred": mm_p.tolist(), "mm_unrelated": mm_u.tolist(),
                         "lower": (mm_u < mm_p).double().tolist(), "ssim": ssim_shut.tolist()}}
        bar.update(1)
        # 4. shuffled prompt embeddings, same target index
        shuffled = _chunked(method, backend, x, text[perm], pred, batch, hidden).cpu()
        ssim_perm = ssim(original[key], shuffled)
        m, e = _mean_sem(ssim_perm)
        result["prompt_randomisation"][key] = {"ssim": m, "ssim_sem": e,
                                               "mm": float(shuffled.flatten(1).mean(1).mean()),
                                               "per_clip": {"ssim": ssim_perm.tolist()}}
        bar.update(1)
        # 3. cascading randomisation, top down
        if skipped:
            continue
        curve, sems, per_clip = [1.0], [0.0], [[1.0] * int(x.shape[0])]
        for _, model in cascading_randomizations(backend, seed):
            masks = _chunked(method, model, x, text, pred, batch).cpu()
            values = ssim(original[key], masks)
            m, e = _mean_sem(values)
            curve.append(m)
            sems.append(e)
            per_clip.append(values.tolist())
            bar.update(1)
        result["cascading"][key] = {"ssim": curve, "ssim_sem": sems, "per_clip": per_clip}
    bar.close()
    result["cascading"]["randomised_blocks"] = list(range(n_blocks + 1))
    if skipped:
        result["cascading"]["skipped"] = skipped
    result["pair_data"] = [{"clip": (names[k] if names else k), "clip_index": k, "prompt": prompts[j],
                            "similarity": float(sim[k, j]), **{f"mm_{m}": float(pair_mm[m][i]) for m in methods}}
                           for i, (k, j) in enumerate(pairs)]
    result["figures"] = _figures(out_dir, methods, sim[pk, pj].cpu().numpy(), pair_mm, original, shut, result,
                                 x[0].cpu(), prompts[int(pred[0])], prompts[int(unrelated[0])],
                                 names[0] if names else "clip 0")
    return result


# -- figures ------------------------------------------------------------------------------------------------
def _figures(out_dir: Path, methods: dict[str, MaskMethod], sims: np.ndarray, pair_mm: dict[str, torch.Tensor],
             original: dict[str, torch.Tensor], shut: dict[str, torch.Tensor], result: dict,
             x0: torch.Tensor, pred_prompt: str, unrelated_prompt: str, name0: str) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..viz import save_figure

    keys = list(methods)
    labels = [LABELS.get(k, k) for k in keys]
    files = {}

    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), squeeze=False, constrained_layout=True)
    for ax, key, label in zip(axes[0], keys, labels):
        ax.scatter(sims, pair_mm[key].numpy(), s=9, alpha=0.6)
        ax.set_title(f"{label}: Spearman ρ = {result['similarity'][key]['spearman']:.2f}", fontsize=10)
        ax.set_xlabel("prompt–audio similarity (cosine)")
        ax.set_ylabel("mask mean")
        ax.set_ylim(-0.02, 1.02)
    files["similarity"] = "sanity_similarity.png"
    save_figure(fig, out_dir / files["similarity"])

    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.8), squeeze=False, constrained_layout=True)
    for ax, key, label in zip(axes[0], keys, labels):
        mp, mu = original[key].flatten(1).mean(1).numpy(), shut[key].flatten(1).mean(1).numpy()
        ax.scatter(mp, mu, s=12, alpha=0.7)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        r = result["shutoff"][key]
        ax.set_title(f"{label}: MM {r['mm_pred']:.2f} → {r['mm_unrelated']:.2f}, SSIM {r['ssim']:.2f}",
                     fontsize=10)
        ax.set_xlabel("mask mean, predicted prompt")
        ax.set_ylabel("mask mean, unrelated prompt")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
    files["shutoff"] = "sanity_shutoff.png"
    save_figure(fig, out_dir / files["shutoff"])

    if "skipped" not in result["cascading"]:
        fig, ax = plt.subplots(figsize=(5.2, 3.8), constrained_layout=True)
        ks = result["cascading"]["randomised_blocks"]
        for key, label in zip(keys, labels):
            c = result["cascading"][key]
            ax.errorbar(ks, c["ssim"], yerr=np.nan_to_num(c["ssim_sem"]), marker="o", capsize=3, label=label)
        ax.set_xticks(ks)
        ax.set_xlabel("blocks randomised (deepest first)")
        ax.set_ylabel("SSIM to the original explanation")
        ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=9)
        files["cascading"] = "sanity_cascading.png"
        save_figure(fig, out_dir / files["cascading"])

    fig, ax = plt.subplots(figsize=(5.2, 3.8), constrained_layout=True)
    pos = np.arange(len(keys))
    ax.bar(pos - 0.2, [result["shutoff"][k]["ssim"] for k in keys], 0.4, label="unrelated prompt")
    ax.bar(pos + 0.2, [result["prompt_randomisation"][k]["ssim"] for k in keys], 0.4, label="shuffled prompts")
    ax.set_xticks(pos, labels)
    ax.set_ylabel("SSIM to the original explanation")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=9)
    files["prompt_randomisation"] = "sanity_prompts.png"
    save_figure(fig, out_dir / files["prompt_randomisation"])

    x_img = x0.numpy()
    fig, axes = plt.subplots(2, len(keys) + 1, figsize=(3.4 * (len(keys) + 1), 5.6), squeeze=False,
                             constrained_layout=True)
    for row, (prompt, masks) in enumerate(((pred_prompt, original), (unrelated_prompt, shut))):
        axes[row][0].imshow(x_img.T, origin="lower", aspect="auto", cmap="magma")
        axes[row][0].set_title(f"{name0}\nprompt: {prompt}", fontsize=8)
        for ax, key, label in zip(axes[row][1:], keys, labels):
            m = masks[key][0].numpy()
            ax.imshow(m.T, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"{label} (mean {m.mean():.2f})", fontsize=9)
        axes[row][0].set_ylabel("frequency bin")
    for ax in axes[-1]:
        ax.set_xlabel("time frame")
    files["examples"] = "sanity_examples.png"
    save_figure(fig, out_dir / files["examples"])
    return files
