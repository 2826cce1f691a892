"""ESC-50-style folders: metadata, the fixed A/B splits, class prompts and caption templates.

A folder holds ``audio/<file>`` and ``meta/esc50.csv`` (``filename,fold,target,category,esc10,src_file,take``),
optionally ``meta/splits.csv`` (``filename,split``). Audio may be stored as .flac while the meta names .wav:
the file is found under either extension.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .errors import DataError

EVAL_TEMPLATE = "this is the sound of {}"

# Caption templates used to train on class-labelled clips (captions, not class ids, reach the models).
CAPTION_TEMPLATES: tuple[str, ...] = (
    "this is the sound of {}",
    "the sound of {}",
    "a recording of {}",
    "{} can be heard",
    "{}",
    "a sound of {}",
    "an audio clip of {}",
    "we hear {}",
)

# Short descriptions per class, in the spirit of free captions ("a dog barks").
DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "dog": ("a dog barks", "a dog barking"), "rooster": ("a rooster crows", "a cock crowing"),
    "pig": ("a pig grunts", "pigs oinking"), "cow": ("a cow moos", "cattle mooing"),
    "frog": ("a frog croaks", "frogs croaking"), "cat": ("a cat meows", "a cat mewing"),
    "hen": ("a hen clucks", "chickens clucking"), "insects": ("insects buzz", "buzzing insects"),
    "sheep": ("a sheep bleats", "sheep baaing"), "crow": ("a crow caws", "crows cawing"),
    "rain": ("rain falls", "rainfall"), "sea waves": ("waves crash on the shore", "the sea"),
    "crackling fire": ("a fire crackles", "a burning fire"), "crickets": ("crickets chirp", "chirping crickets"),
    "chirping birds": ("birds chirp", "birdsong"), "water drops": ("water drips", "dripping water"),
    "wind": ("the wind blows", "a gust of wind"), "pouring water": ("water is poured", "pouring liquid"),
    "toilet flush": ("a toilet is flushed", "a flushing toilet"),
    "thunderstorm": ("thunder rumbles", "a thunderstorm"), "crying baby": ("a baby cries", "an infant crying"),
    "sneezing": ("someone sneezes", "a sneeze"), "clapping": ("people clap", "applause"),
    "breathing": ("someone breathes", "heavy breathing"), "coughing": ("someone coughs", "a cough"),
    "footsteps": ("footsteps", "someone walking"), "laughing": ("someone laughs", "laughter"),
    "brushing teeth": ("someone brushes teeth", "a toothbrush scrubbing"),
    "snoring": ("someone snores", "a person snoring"), "drinking sipping": ("someone sips a drink", "gulping"),
    "door wood knock": ("someone knocks on a door", "knocking on wood"),
    "mouse click": ("a computer mouse clicks", "mouse clicking"),
    "keyboard typing": ("someone types on a keyboard", "typing"),
    "door wood creaks": ("a door creaks", "a creaking door"), "can opening": ("a can is opened", "a can popping open"),
    "washing machine": ("a washing machine runs", "a washer spinning"),
    "vacuum cleaner": ("a vacuum cleaner runs", "vacuuming"), "clock alarm": ("an alarm clock rings", "an alarm"),
    "clock tick": ("a clock ticks", "ticking"), "glass breaking": ("glass breaks", "shattering glass"),
    "helicopter": ("a helicopter flies", "helicopter rotor noise"), "chainsaw": ("a chainsaw runs", "sawing"),
    "siren": ("a siren wails", "an emergency siren"), "car horn": ("a car honks", "a horn honking"),
    "engine": ("an engine runs", "a motor idling"), "train": ("a train passes", "a train on rails"),
    "church bells": ("church bells ring", "bells tolling"), "airplane": ("an airplane flies over", "a jet"),
    "fireworks": ("fireworks explode", "firecrackers"), "hand saw": ("a hand saw cuts wood", "sawing by hand"),
}


def label_text(category: str) -> str:
    """``"crying_baby"`` → ``"crying baby"``."""
    return category.replace("_", " ").strip()


def eval_prompt(category: str) -> str:
    """The evaluation prompt of a class: ``"this is the sound of <label>"``."""
    return EVAL_TEMPLATE.format(label_text(category))


def captions_for(category: str) -> list[str]:
    """All training captions of a class: templates × label, plus its short descriptions (each once)."""
    label = label_text(category)
    return list(dict.fromkeys([t.format(label) for t in CAPTION_TEMPLATES] + list(DESCRIPTIONS.get(label, ()))))


@dataclass(frozen=True)
class Esc50Clip:
    path: Path
    filename: str
    fold: int
    target: int
    category: str
    src_file: str
    split: str | None  # "A", "B" or None when the folder has no splits.csv

    @property
    def label(self) -> str:
        return label_text(self.category)


def _find_audio(root: Path, filename: str) -> Path:
    base = root / "audio" / filename
    for cand in (base, base.with_suffix(".flac"), base.with_suffix(".wav"), base.with_suffix(".ogg")):
        if cand.is_file():
            return cand
    raise DataError(f"audio file listed in meta/esc50.csv not found: {base}")


def read_esc50(root: str | Path) -> list[Esc50Clip]:
    """Every clip of an ESC-50-style folder, in meta order."""
    root = Path(root)
    meta = root / "meta" / "esc50.csv"
    if not meta.is_file():
        raise DataError(f"{root} is not an ESC-50-style folder: {meta} is missing")
    splits: dict[str, str] = {}
    split_file = root / "meta" / "splits.csv"
    if split_file.is_file():
        with split_file.open(newline="") as fh:
            splits = {row["filename"]: row["split"] for row in csv.DictReader(fh)}
    clips = []
    with meta.open(newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                clips.append(Esc50Clip(_find_audio(root, row["filename"]), row["filename"], int(row["fold"]),
                                       int(row["target"]), row["category"], row["src_file"],
                                       splits.get(row["filename"])))
            except KeyError as exc:
                raise DataError(f"{meta} lacks column {exc}") from None
    if not clips:
        raise DataError(f"{meta} lists no clips")
    return clips


def select(clips: Iterable[Esc50Clip], *, splits: Sequence[str] | None = None, folds: Sequence[int] | None = None,
           targets: str = "all") -> list[Esc50Clip]:
    """Filter clips by split (``"A"``/``"B"``), fold numbers and target parity (``all``/``even``/``odd``)."""
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


def grouped_split(clips: Sequence[Esc50Clip], val_fraction: float = 0.2, seed: int = 0
                  ) -> tuple[list[Esc50Clip], list[Esc50Clip]]:
    """Split clips into (train, validation) by ``src_file`` groups, stratified by class where possible."""
    by_class: dict[int, dict[str, list[Esc50Clip]]] = {}
    for c in clips:
        by_class.setdefault(c.target, {}).setdefault(c.src_file, []).append(c)
    rng = random.Random(seed)
    train, val = [], []
    for target in sorted(by_class):
        groups = sorted(by_class[target].items())
        rng.shuffle(groups)
        n_val = int(round(len(groups) * val_fraction)) if len(groups) > 1 else 0
        for k, (_, members) in enumerate(groups):
            (val if k < n_val else train).extend(members)
    return train, val


def class_names(clips: Iterable[Esc50Clip]) -> list[str]:
    """Category names ordered by target id."""
    names: dict[int, str] = {}
    for c in clips:
        names[c.target] = c.category
    return [names[t] for t in sorted(names)]


def grouped_folds(clips: Sequence[Esc50Clip], k: int = 5, seed: int = 0
                  ) -> list[tuple[list[Esc50Clip], list[Esc50Clip]]]:
    """``k`` (train, test) pairs for cross-validation: every ``src_file`` group is tested exactly once, and the
    groups of each class are dealt round-robin over the folds (from a seeded shuffle), so classes spread evenly."""
    if k < 2:
        raise DataError(f"cross-validation needs at least 2 folds, got {k}")
    by_class: dict[int, dict[str, list[Esc50Clip]]] = {}
    for c in clips:
        by_class.setdefault(c.target, {}).setdefault(c.src_file, []).append(c)
    rng = random.Random(seed)
    fold_of: dict[str, int] = {}
    offset = 0
    for target in sorted(by_class):
        groups = sorted(by_class[target])
        rng.shuffle(groups)
        for j, g in enumerate(groups):
            fold_of[f"{target}/{g}"] = (offset + j) % k
        offset += len(groups)  # continue the deal where the last class stopped: folds stay balanced in size
    folds = []
    for f in range(k):
        test = [c for c in clips if fold_of[f"{c.target}/{c.src_file}"] == f]
        train = [c for c in clips if fold_of[f"{c.target}/{c.src_file}"] != f]
        folds.append((train, test))
    return folds
