"""LJ Speech (one reader, public domain): ``wavs/LJ001-0001.flac`` … and ``metadata.csv``
(``id|transcription|normalized transcription``). Every utterance is one clip of the class ``speech``."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..errors import DataError
from .clip import Clip, find_audio


def is_ljspeech_folder(root: str | Path) -> bool:
    return (Path(root) / "metadata.csv").is_file() and (Path(root) / "wavs").is_dir()


def utterance_number(clip: Clip) -> int:
    """``LJ001-0042`` → 42 (the number within chapter LJ001)."""
    return int(clip.filename.rsplit("-", 1)[1])


def read_ljspeech(root: str | Path) -> list[Clip]:
    """Every utterance of ``metadata.csv``, in its order."""
    root = Path(root)
    meta = root / "metadata.csv"
    if not meta.is_file():
        raise DataError(f"{root} is not an LJ Speech folder: {meta} is missing")
    clips = []
    with meta.open(encoding="utf-8") as fh:
        for line in fh:
            uid = line.split("|", 1)[0].strip()
            if uid:
                clips.append(Clip(find_audio(root / "wavs" / f"{uid}.wav", "metadata.csv"), "ljspeech", uid,
                                  "speech", 0, uid))
    if not clips:
        raise DataError(f"{meta} lists no utterances")
    return clips


def select_range(clips: Iterable[Clip], first: int, last: int) -> list[Clip]:
    """Utterances LJ001-<first> … LJ001-<last> (inclusive)."""
    return [c for c in clips if c.filename.startswith("LJ001-") and first <= utterance_number(c) <= last]
