"""ESC-50 (Piczak 2015): ``audio/<fold>-<freesound id>-<take>-<target>.flac``, ``meta/esc50.csv``
(``filename,fold,target,category,esc10,src_file,take``) and the fixed split ``meta/splits.csv`` (``filename,split``:
A, B, C — see ``../shared/data/README.md``). Audio may be stored as .flac while the meta names .wav."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import DataError
from .clip import Clip, find_audio

Esc50Clip = Clip  # the name of the record before UrbanSound8K and speech joined


def is_esc50_folder(root: str | Path) -> bool:
    return (Path(root) / "meta" / "esc50.csv").is_file()


def read_esc50(root: str | Path) -> list[Clip]:
    """Every clip of an ESC-50-style folder, in meta order."""
    root = Path(root)
    meta = root / "meta" / "esc50.csv"
    if not meta.is_file():
        raise DataError(f"{root} is not an ESC-50-style folder: {meta} is missing")
    splits: dict[str, str] = {}
    split_file = root / "meta" / "splits.csv"
    if split_file.is_file():
        with split_file.open(newline="", encoding="utf-8") as fh:
            splits = {row["filename"]: row["split"] for row in csv.DictReader(fh)}
    clips = []
    with meta.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                clips.append(Clip(find_audio(root / "audio" / row["filename"], "meta/esc50.csv"), "esc50",
                                  row["filename"], row["category"], int(row["target"]), row["src_file"],
                                  int(row["fold"]), splits.get(row["filename"])))
            except KeyError as exc:
                raise DataError(f"{meta} lacks column {exc}") from None
    if not clips:
        raise DataError(f"{meta} lists no clips")
    return clips


def select(clips: Iterable[Clip], *, splits: Sequence[str] | None = None, folds: Sequence[int] | None = None,
           targets: str = "all") -> list[Clip]:
    """Filter clips by split (``"A"``/``"B"``/``"C"``), fold numbers and target parity (``all``/``even``/``odd``)."""
    if targets not in ("all", "even", "odd"):
        raise DataError(f"targets must be all, even or odd, got {targets!r}")
    out = []
    for c in clips:
        if splits is not None and c.split not in splits:
            continue
        if folds is not None and c.fold not in folds:
            continue
        if targets != "all" and (c.target % 2 == 0) != (targets == "even"):
            continue
        out.append(c)
    return out
