"""Evaluation conditions: clean clips and clips contaminated at a fixed SNR (paper-notes §5.1), for ESC-50 and
UrbanSound8K alike.

Mixing recipe (the paper states 3 dB; the recipe is ours, documented in docs/results.md)::

    x = s/‖s‖ + 10^(−SNR/20) · n/‖n‖,   then x ← x / max|x|          (peak-normalised)

so the energy ratio of the (scaled) signal and contaminant parts is exactly SNR dB; peak normalisation scales
both parts alike. All waves are one backend window long (``backend.fit_window`` of the file at the backend's
rate). Contaminants, all chosen deterministically from ``(seed, condition, clip filename)``:

- ``mixture``: the first window of another clip of the pool (the held-out set of the same dataset: ESC-50 split B
  or UrbanSound8K folds 7–8, every class) whose class differs from the clip's;
- ``noise``: white Gaussian noise;
- ``speech``: LJ Speech (22.05 kHz, resampled with soxr): consecutive utterances from a chosen one on,
  concatenated until the window is filled; only the held-out utterances LJ001-0101 … 0150 of an LJ Speech folder.

Clips shorter than the window (UrbanSound8K slices last 0.1–4 s) are padded as the backend pads
(``backend.fit_window``).
"""

from __future__ import annotations

import random
import zlib
from pathlib import Path
from typing import NamedTuple, Sequence

import torch

from ..audio import load_audio
from ..datasets import Clip
from ..datasets.pools import SPEECH_HELD_OUT
from ..errors import AudioError, DataError

CONDITIONS: tuple[str, ...] = ("clean", "mixture", "noise", "speech")
SNR_DB = 3.0


class Mixture(NamedTuple):
    """A peak-normalised mixture and its two parts (``wave == signal + noise``), each ``(..., N)``."""

    wave: torch.Tensor
    signal: torch.Tensor
    noise: torch.Tensor


def mix_at_snr(signal: torch.Tensor, noise: torch.Tensor, snr_db: float = SNR_DB) -> Mixture:
    """``s/‖s‖ + 10^(−snr/20)·n/‖n‖``, peak-normalised. ``(..., N)`` × 2 → :class:`Mixture` of ``(..., N)``."""
    if signal.shape != noise.shape:
        raise AudioError(f"cannot mix waves of shapes {tuple(signal.shape)} and {tuple(noise.shape)}")
    s_norm = signal.norm(dim=-1, keepdim=True)
    n_norm = noise.norm(dim=-1, keepdim=True)
    if bool((s_norm == 0).any()) or bool((n_norm == 0).any()):
        raise AudioError("cannot mix a silent wave at a given SNR")
    s = signal / s_norm
    n = noise / n_norm * 10.0 ** (-snr_db / 20.0)
    peak = (s + n).abs().amax(dim=-1, keepdim=True)
    return Mixture((s + n) / peak, s / peak, n / peak)


def snr_db(signal: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Measured SNR ``10·log10(Σs² / Σn²)`` over the last axis. ``(..., N)`` × 2 → ``(...)``."""
    return 10.0 * torch.log10(signal.double().pow(2).sum(-1) / noise.double().pow(2).sum(-1))


def seed_of(*parts: object) -> int:
    """A stable 31-bit seed from strings/ints (Python's ``hash`` is salted per process)."""
    return zlib.crc32("/".join(map(str, parts)).encode()) & 0x7FFFFFFF


def speech_files(speech_dir: str | Path) -> list[Path]:
    """The evaluation's speech audio in a folder (or its ``wavs/``), sorted: of an LJ Speech folder only the
    utterances the protocol holds out (LJ001-0101 … 0150; the rest train models), else every .flac/.wav."""
    speech_dir = Path(speech_dir)
    root = speech_dir / "wavs" if (speech_dir / "wavs").is_dir() else speech_dir
    if not root.is_dir():
        raise DataError(f"speech folder not found: {speech_dir} (pass --speech DIR, an LJ Speech folder)")
    files = sorted(p for p in root.glob("*") if p.suffix.lower() in (".flac", ".wav"))
    first, last = SPEECH_HELD_OUT
    held = [p for p in files if p.stem.startswith("LJ001-") and p.stem[6:].isdigit()
            and first <= int(p.stem[6:]) <= last]
    files = held if any(p.stem.startswith("LJ001-") for p in files) else files
    if not files:
        raise DataError(f"no speech audio (*.flac, *.wav) in {root}")
    return files


class Conditions:
    """Builds each condition's wave for a clip, deterministically.

    Args:
        backend: gives ``sample_rate`` and ``fit_window`` (the window every wave is cut to).
        pool: clips a ``mixture`` contaminant is drawn from (use the whole evaluation split, so that the
            contaminant of a clip does not depend on ``--limit`` or the target parity).
        seed: the evaluation seed.
        speech_dir: an LJ Speech folder (``wavs/*.flac|wav``), needed only for ``speech``.
        snr_db: SNR of the contaminated conditions.
    """

    def __init__(self, backend, pool: Sequence[Clip], seed: int = 0, speech_dir: str | Path | None = None,
                 snr_db: float = SNR_DB):
        self.backend = backend
        self.pool = sorted(pool, key=lambda c: c.filename)
        self.seed = seed
        self.speech_dir = Path(speech_dir) if speech_dir is not None else None
        self.snr_db = snr_db
        self._waves: dict[Path, torch.Tensor] = {}
        self._speech_files: list[Path] | None = None
        self._speech: dict[Path, torch.Tensor] = {}

    # -- loading ------------------------------------------------------------------------------------
    def window(self, path: Path) -> torch.Tensor:
        """The first backend window of a file at the backend's rate, cached. Returns ``(num_samples,)``."""
        if path not in self._waves:
            try:  # dataset audio: a 0.1 s UrbanSound8K slice is data, not a user error
                wave = load_audio(path, self.backend.sample_rate, min_seconds=0)
            except AudioError as exc:
                raise DataError(f"evaluation data: {exc}") from None
            self._waves[path] = self.backend.fit_window(wave)
        return self._waves[path]

    def speech_files(self) -> list[Path]:
        if self._speech_files is None:
            if self.speech_dir is None:
                raise DataError("the speech condition needs an LJ Speech folder (pass --speech DIR)")
            self._speech_files = speech_files(self.speech_dir)
        return self._speech_files

    def _utterance(self, path: Path) -> torch.Tensor:
        if path not in self._speech:
            try:
                self._speech[path] = load_audio(path, self.backend.sample_rate, min_seconds=0)
            except AudioError as exc:
                raise DataError(f"evaluation speech: {exc}") from None
        return self._speech[path]

    # -- contaminants ---------------------------------------------------------------------------------
    def partner(self, clip: Clip) -> Clip:
        """The ``mixture`` contaminant of a clip: a pool clip of another class."""
        others = [c for c in self.pool if c.target != clip.target]
        if not others:
            raise DataError("the mixture condition needs clips of at least two classes in the evaluation split")
        return random.Random(f"{self.seed}/mixture/{clip.filename}").choice(others)

    def speech(self, clip: Clip) -> tuple[torch.Tensor, str]:
        """``(num_samples,)`` speech for a clip and the ids of the utterances used."""
        files = self.speech_files()
        start = random.Random(f"{self.seed}/speech/{clip.filename}").randrange(len(files))
        parts, used, total, k = [], [], 0, start
        while total < self.backend.num_samples:
            u = self._utterance(files[k % len(files)])
            parts.append(u)
            used.append(files[k % len(files)].stem)
            total += u.shape[0]
            k += 1  # load_audio refuses empty files, so this ends
        return torch.cat(parts)[: self.backend.num_samples], "+".join(used)

    def noise(self, clip: Clip) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed_of(self.seed, "noise", clip.filename))
        return torch.randn(self.backend.num_samples, generator=g)

    def contaminant(self, condition: str, clip: Clip) -> tuple[torch.Tensor, str]:
        """``(num_samples,)`` contaminant of a contaminated condition and a short description of it."""
        if condition == "mixture":
            other = self.partner(clip)
            return self.window(other.path), other.filename
        if condition == "noise":
            return self.noise(clip), "white noise"
        if condition == "speech":
            return self.speech(clip)
        raise DataError(f"unknown condition {condition!r}; choose from {', '.join(CONDITIONS)}")

    def apply(self, condition: str, clip: Clip) -> tuple[torch.Tensor, str]:
        """The clip's wave under a condition, ``(num_samples,)``, and what contaminates it (``""`` if clean)."""
        wave = self.window(clip.path)
        if condition == "clean":
            return wave, ""
        noise, what = self.contaminant(condition, clip)
        return mix_at_snr(wave, noise.to(wave), self.snr_db).wave, what


def check_choices(names: Sequence[str], allowed: Sequence[str], what: str) -> list[str]:
    """``names`` normalised (stripped, lower case, each once, in order); any not in ``allowed`` → DataError."""
    names = [n.strip().lower() for n in names if n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise DataError(f"unknown {what}(s) {bad or names}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(names))


def check_conditions(names: Sequence[str]) -> list[str]:
    return check_choices(names, CONDITIONS, "condition")
