"""The evaluation protocol of ``../shared/data/README.md`` as code: training pools, validation and held-out sets.

One call gives every model, tool and test the same clips::

    training_pool("esc50-eval", root)   # ESC-50 A ∪ C, UrbanSound8K folds 1–6, LJ001-0001…0100, minus held-out recordings
    held_out("urbansound8k", root)      # UrbanSound8K folds 7–8
    train, val = validation_split(training_pool("esc50-eval", root))

``root`` is the folder holding ``esc50/``, ``urbansound8k/`` and ``ljspeech/`` (default ``../shared/data``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import DataError
from .clip import Clip
from .esc50 import is_esc50_folder, read_esc50, select
from .speech import read_ljspeech, select_range
from .splits import grouped_split
from .urbansound8k import read_urbansound8k, select_folds

DEFAULT_ROOT = Path("../shared/data")
READERS = {"esc50": read_esc50, "urbansound8k": read_urbansound8k, "ljspeech": read_ljspeech}
POOLS = ("esc50-eval", "default", "unseen-prompts", "zeroshot")

SPEECH_TRAIN = (1, 100)      # LJ001-0001 … 0100: free for training
SPEECH_HELD_OUT = (101, 150)  # LJ001-0101 … 0150: the evaluation's speech contaminant only
US8K_HELD_OUT = (7, 8)
US8K_VALIDATION = (6,)


def data_root(path: str | Path | None = None) -> Path:
    """The folder that holds the datasets. An ESC-50 folder given where a root is expected (runs and
    commands of the earlier protocol) resolves to its parent."""
    root = Path(path) if path is not None else DEFAULT_ROOT
    if is_esc50_folder(root) and not (root / "esc50").is_dir():
        root = root.parent
    if not root.is_dir():
        raise DataError(f"data folder not found: {root} (it should hold esc50/, urbansound8k/, ljspeech/)")
    return root


def read_dataset(name: str, root: str | Path | None = None) -> list[Clip]:
    """Every clip of one dataset under ``root``: ``esc50``, ``urbansound8k`` or ``ljspeech``."""
    if name not in READERS:
        raise DataError(f"unknown dataset {name!r}; choose from {', '.join(READERS)}")
    folder = data_root(root) / name  # each dataset lives in a folder of its name
    if not folder.is_dir():
        raise DataError(f"{name} not found: {folder} is missing")
    return READERS[name](folder)


def held_out(name: str, root: str | Path | None = None) -> list[Clip]:
    """The protocol's held-out clips of a dataset: ESC-50 split B, UrbanSound8K folds 7–8, LJ001-0101…0150."""
    clips = read_dataset(name, root)
    if name == "esc50":
        return select(clips, splits=["B"])
    if name == "urbansound8k":
        return select_folds(clips, US8K_HELD_OUT)
    return select_range(clips, *SPEECH_HELD_OUT)


def training_pool(model: str, root: str | Path | None = None) -> list[Clip]:
    """The clips a model trains on (its CLAP and its decoder), in a fixed order (dataset, then metadata).

    - ``esc50-eval``: ESC-50 A ∪ C, UrbanSound8K folds 1–6, LJ001-0001…0100; every clip whose recording is in a
      held-out set of either dataset is left out (ESC-50 and UrbanSound8K share freesound recordings).
    - ``default``: ESC-50 A, B, C, UrbanSound8K folds 1–8, LJ001-0001…0100 (everything free to train on).
    - ``unseen-prompts`` / ``zeroshot``: ``esc50-eval`` without ESC-50's odd-target classes (nor the UrbanSound8K
      classes that name the same sound): the decoder of "unseen prompts" and the class-disjoint CLAP.
    """
    if model not in POOLS:
        raise DataError(f"unknown training pool {model!r}; choose from {', '.join(POOLS)}")
    root = data_root(root)
    esc = read_dataset("esc50", root)
    us8k = read_dataset("urbansound8k", root)
    speech = select_range(read_dataset("ljspeech", root), *SPEECH_TRAIN)
    if model == "default":
        return esc + select_folds(us8k, range(1, 9)) + speech
    held = {c.recording for c in select(esc, splits=["B"]) + select_folds(us8k, US8K_HELD_OUT)}
    pool = [c for c in select(esc, splits=["A", "C"]) + select_folds(us8k, range(1, 7)) + speech
            if c.recording not in held]
    if model in ("unseen-prompts", "zeroshot"):
        odd = {c.class_key for c in esc if c.target % 2 == 1}
        pool = [c for c in pool if c.class_key not in odd]
    return pool


def validation_split(pool: Sequence[Clip], *, val_fraction: float = 0.2, seed: int = 0
                     ) -> tuple[list[Clip], list[Clip]]:
    """(train, validation) of a pool as the protocol chooses hyper-parameters: a recording-grouped,
    class-stratified ``val_fraction`` of its ESC-50 clips and UrbanSound8K fold 6; speech stays in train.
    Clips of the other dataset that share a recording with a validation clip are left out of train."""
    esc = [c for c in pool if c.dataset == "esc50"]
    _, esc_val = grouped_split(esc, val_fraction, seed)
    us_val = [c for c in pool if c.dataset == "urbansound8k" and c.fold in US8K_VALIDATION]
    val_keys = {c.key for c in esc_val + us_val}
    val_recordings = {c.recording for c in esc_val + us_val}
    return ([c for c in pool if c.key not in val_keys and c.recording not in val_recordings],
            [c for c in pool if c.key in val_keys])
