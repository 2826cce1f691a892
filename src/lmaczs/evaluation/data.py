"""Which clips an evaluation runs on: the held-out set of ESC-50 or UrbanSound8K, found by the folder's layout.

    select_eval_data("../shared/data/esc50")          # split B, all 193 clips, 50 prompts
    select_eval_data("../shared/data/urbansound8k")   # folds 7–8, 10 prompts
    select_eval_data(..., max_clips=100, seed=0)      # a fixed seeded subset (nested: 100 ⊂ 150 ⊂ all)

The *pool* is the held-out set the clips are drawn from (ESC-50: the split; UrbanSound8K: the folds); mixture,
separation and same-dataset localisation partners come from it, so a clip's partner does not depend on
``--limit``, ``--max-clips`` or ``--targets``. Prompts are ``"this is the sound of <class>"`` for every class of the
dataset (ESC-50's 50, UrbanSound8K's 10), whether or not the pool holds clips of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Sequence

from ..datasets import Clip, class_names, eval_prompt, is_esc50_folder, is_urbansound8k_folder
from ..datasets.esc50 import read_esc50, select
from ..datasets.pools import US8K_HELD_OUT
from ..datasets.urbansound8k import read_urbansound8k, select_folds
from ..errors import DataError
from .conditions import seed_of

DATASET_LABELS = {"esc50": "ESC-50", "urbansound8k": "UrbanSound8K", "ljspeech": "LJ Speech"}
ESC50_SPLIT = "B"


def detect_dataset(folder: str | Path) -> str:
    """``"esc50"`` or ``"urbansound8k"`` from a folder's layout (its metadata file); a one-line DataError else."""
    folder = Path(folder)
    if is_esc50_folder(folder):
        return "esc50"
    if is_urbansound8k_folder(folder):
        return "urbansound8k"
    if not folder.is_dir():
        raise DataError(f"--data {folder}: no such folder")
    if any((folder / d).is_dir() for d in ("esc50", "urbansound8k")):
        raise DataError(f"--data {folder} holds several datasets: pass {folder / 'esc50'} or "
                        f"{folder / 'urbansound8k'}")
    raise DataError(f"--data {folder} is neither an ESC-50 folder (meta/esc50.csv) nor an UrbanSound8K folder "
                    "(meta/UrbanSound8K.csv)")


def seeded_subset(clips: Sequence[Clip], n: int, seed: int) -> list[Clip]:
    """``n`` clips chosen by a seeded ranking of their keys, kept in their original order. Nested: the subset of
    size n is contained in that of size n + 1 (for one seed), so a longer run extends a shorter one."""
    ranked = sorted(clips, key=lambda c: (seed_of(seed, "subset", c.key), c.key))
    chosen = {c.key for c in ranked[:n]}
    return [c for c in clips if c.key in chosen]


@dataclass
class EvalData:
    """The clips of one evaluation and what the conditions need around them."""

    dataset: str  # "esc50" | "urbansound8k"
    folder: Path  # the dataset folder
    clips: list[Clip]  # evaluated, in metadata order
    pool: list[Clip]  # the held-out set they come from (partners are drawn here)
    classes: list[str]  # every class of the dataset, in target order
    targets: list[int]  # their class ids, ascending (prompt i is class targets[i])
    selection: dict = field(default_factory=dict)  # split/folds/targets/limit/max_clips, for the report

    @property
    def label(self) -> str:
        return DATASET_LABELS[self.dataset]

    @property
    def root(self) -> Path:
        """The folder holding the datasets (``esc50/``, ``urbansound8k/``, ``ljspeech/``)."""
        return self.folder.resolve().parent

    @property
    def prompts(self) -> list[str]:
        return [eval_prompt(c) for c in self.classes]

    @property
    def index(self) -> dict[int, int]:
        """Class id → prompt index."""
        return {t: i for i, t in enumerate(self.targets)}

    @cached_property
    def ranks(self) -> dict[str, int]:
        """Clip key → position in the pool ordered by filename (stable under any sub-selection)."""
        return {c.key: i for i, c in enumerate(sorted(self.pool, key=lambda c: c.filename))}


def select_eval_data(data: str | Path, *, split: str | None = None, folds: Sequence[int] | None = None,
                     targets: str | None = None, limit: int | None = None, max_clips: int | None = None,
                     seed: int = 0) -> EvalData:
    """The evaluation's clips (see the module docstring). ``split``/``targets`` are ESC-50's (default B, all),
    ``folds`` UrbanSound8K's (default 7 8; for ESC-50 a filter within the split). ``max_clips``: a seeded subset;
    ``limit``: then the first N."""
    for name, value in (("--limit", limit), ("--max-clips", max_clips)):
        if value is not None and value < 1:
            raise DataError(f"{name} must be at least 1, got {value}")
    folder = Path(data)
    dataset = detect_dataset(folder)
    if dataset == "esc50":
        every = read_esc50(folder)
        split = split or ESC50_SPLIT
        pool = select(every, splits=[split], folds=list(folds) if folds else None)
        if not pool:
            raise DataError(f"no clips of split {split!r}{f' in folds {list(folds)}' if folds else ''} in {folder} "
                            "(is meta/splits.csv there?)")
        clips = select(pool, targets=targets or "all")
        if not clips:
            raise DataError(f"no {targets}-target clips of split {split!r} in {folder}")
        selection = {"split": split, "folds": list(folds) if folds else None, "targets": targets or "all"}
    else:
        if split is not None:
            raise DataError("--split is ESC-50's; UrbanSound8K is selected by --folds")
        if targets not in (None, "all"):
            raise DataError("--targets is ESC-50's (class parity); UrbanSound8K is selected by --folds")
        every = read_urbansound8k(folder)
        folds = list(folds) if folds else list(US8K_HELD_OUT)
        pool = select_folds(every, folds)
        if not pool:
            raise DataError(f"no UrbanSound8K slices of folds {folds} in {folder}")
        clips = list(pool)
        selection = {"folds": folds}
    if max_clips is not None:
        clips = seeded_subset(clips, max_clips, seed)
    if limit is not None:
        clips = clips[:limit]
    selection.update(limit=limit, max_clips=max_clips)
    return EvalData(dataset, folder, clips, pool, class_names(every), sorted({c.target for c in every}), selection)


def held_out_note(data: EvalData) -> str:
    """Whether the selection is the protocol's held-out set (``../shared/data/README.md``), in words."""
    sel = data.selection
    if data.dataset == "esc50":
        held = sel.get("split") == ESC50_SPLIT
        what = f"split {sel.get('split')}" + (f", folds {sel['folds']}" if sel.get("folds") else "")
    else:
        held = set(sel.get("folds") or []) <= set(US8K_HELD_OUT)
        what = f"folds {', '.join(map(str, sel.get('folds') or []))}"
    return f"{what} ({'held out' if held else 'NOT the held-out set: the esc50-eval model trained on some of it'})"
