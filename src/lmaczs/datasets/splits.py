"""Splits that keep each source recording on one side: (train, validation) and k-fold cross-validation."""

from __future__ import annotations

import random
from typing import Iterable, Sequence

from ..errors import DataError
from .clip import Clip


def _groups_by_class(clips: Iterable[Clip]) -> dict[str, dict[str, list[Clip]]]:
    by_class: dict[str, dict[str, list[Clip]]] = {}
    for c in clips:
        by_class.setdefault(c.class_key, {}).setdefault(c.recording, []).append(c)
    return by_class


def grouped_split(clips: Sequence[Clip], val_fraction: float = 0.2, seed: int = 0
                  ) -> tuple[list[Clip], list[Clip]]:
    """Split clips into (train, validation) by recording groups, stratified by class where possible."""
    rng = random.Random(seed)
    train, val = [], []
    by_class = _groups_by_class(clips)
    for key in sorted(by_class):
        groups = sorted(by_class[key].items())
        rng.shuffle(groups)
        n_val = int(round(len(groups) * val_fraction)) if len(groups) > 1 else 0
        for k, (_, members) in enumerate(groups):
            (val if k < n_val else train).extend(members)
    return train, val


def grouped_folds(clips: Sequence[Clip], k: int = 5, seed: int = 0) -> list[tuple[list[Clip], list[Clip]]]:
    """``k`` (train, test) pairs for cross-validation: every recording group is tested exactly once, and the
    groups of each class are dealt round-robin over the folds (from a seeded shuffle), so classes spread evenly."""
    if k < 2:
        raise DataError(f"cross-validation needs at least 2 folds, got {k}")
    rng = random.Random(seed)
    fold_of: dict[tuple[str, str], int] = {}
    offset = 0
    by_class = _groups_by_class(clips)
    for key in sorted(by_class):
        groups = sorted(by_class[key])
        rng.shuffle(groups)
        for j, g in enumerate(groups):
            fold_of[(key, g)] = (offset + j) % k
        offset += len(groups)  # continue the deal where the last class stopped: folds stay balanced in size
    return [([c for c in clips if fold_of[(c.class_key, c.recording)] != f],
             [c for c in clips if fold_of[(c.class_key, c.recording)] == f]) for f in range(k)]


def class_names(clips: Iterable[Clip]) -> list[str]:
    """Category names ordered by (dataset, target id): ESC-50's 50 names in target order, and so on."""
    names: dict[tuple[str, int], str] = {}
    for c in clips:
        names[(c.dataset, c.target)] = c.category
    return [names[k] for k in sorted(names)]
