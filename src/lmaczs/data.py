"""Training data for the decoder: captioned clips from a captions CSV, an ESC-50-style folder, or a training pool
of the data protocol (:func:`lmaczs.datasets.training_pool`).

A captions CSV has a header ``path,caption`` (paths relative to the CSV's folder or absolute); several rows may name
one file (all its captions are used). An ESC-50-style folder gives each clip the captions of its class
(:func:`lmaczs.datasets.captions_for`), filtered by ``meta/splits.csv`` split, fold and target parity.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from . import datasets
from .audio import load_audio
from .errors import AudioError, DataError


@dataclass(frozen=True)
class CaptionedClip:
    path: Path
    captions: tuple[str, ...]
    group: str  # clips of one group (e.g. one source recording) never straddle train and validation
    category: str = ""  # class name when known (datasets); mixture captions name it
    class_key: str = ""  # class identity when known: mixtures combine clips of different classes


def read_captions_csv(path: str | Path) -> list[CaptionedClip]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"captions CSV not found: {path}")
    by_file: dict[Path, list[str]] = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"path", "caption"} <= set(reader.fieldnames):
            raise DataError(f"{path} needs a header with columns path,caption")
        for row in reader:
            caption = (row["caption"] or "").strip()
            if not caption or not row["path"]:
                continue
            p = Path(row["path"])
            p = p if p.is_absolute() else path.parent / p
            by_file.setdefault(p, []).append(caption)
    if not by_file:
        raise DataError(f"{path} lists no (path, caption) rows")
    return [CaptionedClip(p, tuple(caps), str(p)) for p, caps in by_file.items()]


def esc50_items(root: str | Path, *, splits: Sequence[str] | None = None, folds: Sequence[int] | None = None,
                targets: str = "all") -> list[CaptionedClip]:
    clips = datasets.select(datasets.read_esc50(root), splits=splits, folds=folds, targets=targets)
    if not clips:
        raise DataError(f"no clips in {root} match splits={splits} folds={folds} targets={targets}")
    # grouped by src_file as before the datasets joined (runs of the earlier protocol keep their split)
    return [CaptionedClip(c.path, tuple(datasets.captions_for(c.category)), c.src_file, c.category, c.class_key)
            for c in clips]


def captioned(clip: "datasets.Clip") -> CaptionedClip:
    """A dataset clip with its class's captions, grouped by source recording."""
    return CaptionedClip(clip.path, tuple(datasets.captions_for(clip.category)), clip.recording, clip.category,
                         clip.class_key)


def load_items(data: str | Path, *, splits: Sequence[str] | None = None, folds: Sequence[int] | None = None,
               targets: str = "all", pool: str | None = None) -> list[CaptionedClip]:
    """Captioned clips of a captions CSV, an ESC-50-style folder, or (``pool``) a training pool under the
    datasets' root folder ``data``."""
    data = Path(data)
    if pool is not None:
        if splits or folds or targets != "all":
            raise DataError("--splits/--folds/--targets select ESC-50 clips; a --pool fixes its own clips")
        name, _, part = pool.partition(":")
        clips = datasets.training_pool(name, data)
        if part:  # "esc50-eval:train": the pool less its validation part (choosing hyper-parameters)
            if part != "train":
                raise DataError(f"unknown pool part {part!r} in {pool!r}; use NAME or NAME:train")
            clips = datasets.validation_split(clips)[0]
        return [captioned(c) for c in clips]
    if data.is_dir():
        return esc50_items(data, splits=splits, folds=folds, targets=targets)
    if data.suffix.lower() == ".csv":
        if splits or folds or targets != "all":
            raise DataError("--splits/--folds/--targets apply to ESC-50-style folders, not to a captions CSV")
        return read_captions_csv(data)
    raise DataError(f"--data must be a captions CSV (path,caption) or an ESC-50-style folder, got {data}")


def split_by_group(items: Sequence[CaptionedClip], val_fraction: float, seed: int
                   ) -> tuple[list[CaptionedClip], list[CaptionedClip]]:
    """Deterministic (train, validation) split that keeps each group on one side."""
    groups = sorted({it.group for it in items})
    random.Random(seed).shuffle(groups)
    n_val = int(round(len(groups) * val_fraction))
    if val_fraction > 0 and n_val == 0 and len(groups) > 1:
        n_val = 1
    val_groups = set(groups[:n_val])
    return ([it for it in items if it.group not in val_groups], [it for it in items if it.group in val_groups])


def load_windows(items: Sequence[CaptionedClip], backend, progress: bool = True) -> torch.Tensor:
    """First window of every clip at the backend's rate: ``(N_items, num_samples)``. Unreadable → DataError."""
    waves = []
    for it in tqdm(items, desc="loading audio", disable=not progress, leave=False):
        try:
            wave = load_audio(it.path, backend.sample_rate, min_seconds=0)
        except AudioError as exc:
            raise DataError(f"training data: {exc}") from None
        waves.append(backend.fit_window(wave))
    return torch.stack(waves)
