"""One labelled recording of a dataset, whatever the dataset: what every loader yields."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

# UrbanSound8K classes that name the same sound as an ESC-50 class. Contrastive training treats them as one class
# (a US8K dog_bark slice is a positive of an ESC-50 "dog" caption); prompts and evaluation keep each dataset's own.
SHARED_CLASSES: dict[str, str] = {
    "urbansound8k:dog_bark": "esc50:dog",
    "urbansound8k:car_horn": "esc50:car_horn",
    "urbansound8k:siren": "esc50:siren",
    "urbansound8k:engine_idling": "esc50:engine",
}


@dataclass(frozen=True)
class Clip:
    """A recording with its class and where it sits in its dataset's official layout.

    ``recording`` groups clips cut from one source recording (ESC-50 ``src_file`` and UrbanSound8K ``fsID`` are
    both freesound ids, so they share one namespace, ``fs:<id>``; speech is ``lj:<utterance>``): clips of one
    recording never straddle training and evaluation.
    """

    path: Path
    dataset: str            # "esc50" | "urbansound8k" | "ljspeech"
    filename: str           # the metadata's name (ESC-50/UrbanSound8K keep the original .wav name)
    category: str           # the dataset's class name ("crying_baby", "dog_bark", "speech")
    target: int             # the dataset's class id
    src_file: str           # source recording id within the dataset (freesound id, LJ utterance id)
    fold: int | None = None  # the official fold (ESC-50 1-5, UrbanSound8K 1-10); None for speech
    split: str | None = None  # ESC-50's fixed split ("A", "B", "C"), None elsewhere

    @property
    def label(self) -> str:
        """Readable class label: ``"crying baby"``, ``"children playing"``, ``"a person speaking"``."""
        from .captions import label_text

        return label_text(self.category)

    @property
    def recording(self) -> str:
        """Cross-dataset recording id (``fs:<freesound id>`` or ``lj:<utterance id>``)."""
        return f"lj:{self.src_file}" if self.dataset == "ljspeech" else f"fs:{self.src_file}"

    @property
    def key(self) -> str:
        """Unique over all datasets: ``"<dataset>/<filename>"``."""
        return f"{self.dataset}/{self.filename}"

    @property
    def class_key(self) -> str:
        """The class as contrastive training sees it (``SHARED_CLASSES`` merged): ``"esc50:dog"``."""
        own = f"{self.dataset}:{self.category}"
        return SHARED_CLASSES.get(own, own)


def find_audio(base: Path, what: str) -> Path:
    """``base`` as listed, or with the extension the files are stored under (.flac, .wav, .ogg, .mp3)."""
    for cand in (base, base.with_suffix(".flac"), base.with_suffix(".wav"), base.with_suffix(".ogg"),
                 base.with_suffix(".mp3")):
        if cand.is_file():
            return cand
    raise DataError(f"audio file listed in {what} not found: {base}")
