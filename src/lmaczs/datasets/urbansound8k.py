"""UrbanSound8K (Salamon et al. 2014): ``audio/fold<k>/<slice>.ogg`` and ``meta/UrbanSound8K.csv`` (the official
columns ``slice_file_name,fsID,start,end,salience,fold,classID,class``; the copy in ``../shared/data`` adds
``offset_in_recording`` and ``source``). Slices of one recording (``fsID``) are always in one fold: use the folds
as given."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import DataError
from .clip import Clip, find_audio

CLASSES = ("air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling", "engine_idling", "gun_shot",
           "jackhammer", "siren", "street_music")


def is_urbansound8k_folder(root: str | Path) -> bool:
    return (Path(root) / "meta" / "UrbanSound8K.csv").is_file()


def read_urbansound8k(root: str | Path) -> list[Clip]:
    """Every slice listed in ``meta/UrbanSound8K.csv`` whose audio is present, in meta order."""
    root = Path(root)
    meta = root / "meta" / "UrbanSound8K.csv"
    if not meta.is_file():
        raise DataError(f"{root} is not an UrbanSound8K folder: {meta} is missing")
    clips = []
    with meta.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                fold = int(row["fold"])
                path = find_audio(root / "audio" / f"fold{fold}" / row["slice_file_name"], "meta/UrbanSound8K.csv")
                clips.append(Clip(path, "urbansound8k", row["slice_file_name"], row["class"], int(row["classID"]),
                                  row["fsID"], fold))
            except KeyError as exc:
                raise DataError(f"{meta} lacks column {exc}") from None
    if not clips:
        raise DataError(f"{meta} lists no slices")
    return clips


def select_folds(clips: Iterable[Clip], folds: Sequence[int]) -> list[Clip]:
    return [c for c in clips if c.fold in set(folds)]
