"""The web demo, ``lmac-zs serve``: upload or record a clip, type prompts, see and *hear* the explanation.

The page (gradio, the ``web`` extra) shows the zero-shot scores as bars, the spectrogram with the LMAC-ZS mask,
players for the original, the explanation and the residual, lets one pick the prompt to explain and a prompt to
explain it *rather than*, puts a post-hoc saliency baseline (:mod:`lmaczs.baselines`) beside LMAC-ZS, and on
request explains each of the k top-scoring prompts (a figure and a player per prompt).

The logic lives in :class:`Demo` (plain Python, tested without a browser); :func:`build_app` only wires it to
gradio components. Errors reach the page as one line (an :class:`LmacError` message), never as a stack trace, and
never with a path of the server's (:func:`public_message`).

Files: the page's figures and players of one answer are written into a folder of their own inside gradio's
cache (:class:`AnswerFiles`); it is removed when the same browser session gets its next answer, when the
session ends (tab closed or reloaded), after an hour at the latest, and when the server stops. The copy gradio
keeps of an upload is removed when no session shows it any more; files outside gradio's cache (the example
clips, anything of the user's) are never removed.
"""

from __future__ import annotations

import argparse
import atexit
import filecmp
import io
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

from .errors import AudioError, LmacError, PromptError

if TYPE_CHECKING:  # the CLI imports this module for every command: keep torch out of its import
    from .explain import Explainer, Explanation

log = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).parent / "assets" / "examples"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
MAX_UPLOAD_MB = 20.0
MAX_SECONDS = 60.0
MAX_TOPK = 5  # top-k slots on the page
MAX_AGE_S = 3600.0  # answers and uploads older than this are removed even if their session never ended
TOP = "(top prediction)"
NONE = "(none)"
DEFAULT_BASELINE = "gradcam++"
DEFAULT_PROMPTS = ["dog", "rain", "crying baby", "church bells", "helicopter", "sea waves"]

# An absolute path (POSIX, or Windows with a drive letter) of at least two components, not part of a word.
_ABS_PATH = re.compile(r"(?<![\w.~-])(?:[A-Za-z]:[\\/]|/)(?:[^\s'\"`<>|;,()\[\]{}\\/]+[\\/])+"
                       r"[^\s'\"`<>|;,()\[\]{}\\/]*")


def public_message(text: str, paths: Sequence[str | os.PathLike | None] = ()) -> str:
    """The first line of ``text`` fit for the page: every ``paths`` entry (and its resolved form) and any
    other absolute path is replaced by its base name, so no folder of the server shows."""
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    known: set[str] = set()
    for p in paths:
        if p:
            known.add(os.fspath(p))
            try:
                known.add(str(Path(p).resolve()))
            except (OSError, RuntimeError):
                pass
    for p in sorted(known, key=len, reverse=True):
        name = Path(p).name
        if name and p != name:
            line = line.replace(p, name)
    return _ABS_PATH.sub(lambda m: re.split(r"[\\/]", m.group(0).rstrip("\\/"))[-1] or "(a file)", line)


def baseline_names() -> list[str]:
    """The saliency baselines available (empty when :mod:`lmaczs.baselines` is missing or broken)."""
    try:
        from .baselines import METHODS
    except Exception as exc:  # optional: the demo works without baselines
        log.warning("baselines unavailable: %s", exc)
        return []
    return list(METHODS)


def parse_prompts(text: str | None) -> list[str]:
    """One prompt per line (blank lines ignored), validated by :func:`lmaczs.explain.check_prompts`."""
    from .explain import check_prompts

    return check_prompts([line.strip() for line in (text or "").splitlines() if line.strip()])


def parse_top_k(value: Any) -> int:
    """The page's top-k control → ``0`` (off) … :data:`MAX_TOPK`; ``None`` / ``""`` is off."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0
    try:
        k = float(value)
    except (TypeError, ValueError):
        raise PromptError(f"top-k must be a whole number from 0 (off) to {MAX_TOPK}, got {value!r}") from None
    if isinstance(value, bool) or not k.is_integer() or not 0 <= k <= MAX_TOPK:
        raise PromptError(f"top-k must be a whole number from 0 (off) to {MAX_TOPK}, got {value!r}")
    return int(k)


def figure_image(e: Explanation):
    """The explanation's matplotlib figure as a PIL image (the figure is closed: no leak across requests)."""
    import matplotlib.pyplot as plt
    from PIL import Image

    fig = e.figure()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=90)
    finally:
        plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _players(e: Explanation) -> dict[str, tuple[int, np.ndarray]]:
    """``{original, explanation, residual}`` → ``(sample_rate, int16 samples)`` with one common gain."""
    from .report import playable

    return {k: (e.sample_rate, np.round(v * 32767).astype(np.int16)) for k, v in playable(e).items()}


@dataclass
class TopkItem:
    """One top-k slot of the page: the rank-th top-scoring prompt's explanation."""

    rank: int
    title: str  # markdown
    figure: Any  # PIL image
    explanation: tuple[int, np.ndarray]
    lmac: Explanation


@dataclass
class DemoResult:
    """What one click on "Explain" shows."""

    scores: dict[str, float]
    status: str
    figure: Any = None  # PIL images
    original: Optional[tuple[int, np.ndarray]] = None
    explanation: Optional[tuple[int, np.ndarray]] = None
    residual: Optional[tuple[int, np.ndarray]] = None
    baseline_figure: Any = None
    baseline_explanation: Optional[tuple[int, np.ndarray]] = None
    baseline_residual: Optional[tuple[int, np.ndarray]] = None
    lmac: Optional[Explanation] = None
    baseline: Optional[Explanation] = None
    topk: list[TopkItem] = field(default_factory=list)

    def outputs(self) -> tuple:
        """The values in :data:`OUTPUT_ORDER`, then :data:`TOPK_ORDER` for each of the :data:`MAX_TOPK` slots
        (``None`` for unused slots)."""
        values = [getattr(self, name) for name in OUTPUT_ORDER]
        for i in range(MAX_TOPK):
            item = self.topk[i] if i < len(self.topk) else None
            values += [getattr(item, name) if item else None for name in TOPK_ORDER]
        return tuple(values)


OUTPUT_ORDER = ("scores", "figure", "original", "explanation", "residual", "baseline_figure",
                "baseline_explanation", "baseline_residual", "status")
TOPK_ORDER = ("title", "figure", "explanation")
FILE_OUTPUTS = ("figure", "original", "explanation", "residual", "baseline_figure", "baseline_explanation",
                "baseline_residual")


def gradio_cache_dir() -> Path:
    """Where gradio keeps uploads and the files it serves (``GRADIO_TEMP_DIR``, else ``$TMPDIR/gradio``)."""
    try:
        from gradio.utils import get_upload_folder

        return Path(get_upload_folder())
    except Exception:  # gradio missing or its internals moved: its documented default
        return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


class AnswerFiles:
    """The files the page serves, one folder per answer, and the uploads the sessions explained.

    An answer's folder is created inside ``cache_dir`` (gradio's cache, so gradio serves the files as they are)
    and removed when the same session gets its next answer, when the session ends, after ``max_age_s``, or
    at :meth:`close` (also run at exit). An upload is removed when no live session shows it any more — only a
    file inside ``cache_dir`` (gradio's copy), never one of ``protect`` (the example clips) or a copy with the
    same content, never anything outside ``cache_dir``.
    """

    def __init__(self, cache_dir: str | os.PathLike, protect: Sequence[str | os.PathLike] = (),
                 max_age_s: float = MAX_AGE_S):
        self.cache_dir = Path(cache_dir).resolve()
        self.protect = [Path(p).resolve() for p in protect]
        self.max_age_s = float(max_age_s)
        self._root: Optional[Path] = None
        self._lock = threading.RLock()
        self._answers: dict[str, Path] = {}  # session → its current answer's folder
        self._uploads: dict[str, Path] = {}  # session → the upload it explained last
        self._ended: dict[str, float] = {}  # sessions that ended (an answer finishing after that is dropped)
        self._at_exit = False

    @property
    def root(self) -> Path:
        """This server's folder of answers (created on first use, removed at exit)."""
        with self._lock:
            if self._root is None or not self._root.is_dir():
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                self._root = Path(tempfile.mkdtemp(prefix="lmaczs-answers-", dir=self.cache_dir))
                if not self._at_exit:
                    atexit.register(self.close)
                    self._at_exit = True
            return self._root

    def new_answer(self) -> Path:
        """A fresh, empty folder for one answer's files (and a sweep of stale ones)."""
        self.sweep()
        folder = self.root / uuid.uuid4().hex
        folder.mkdir()
        return folder

    def keep(self, session: str | None, answer: Path | None, upload: str | os.PathLike | None) -> None:
        """Record ``session``'s new answer (``None`` after an error: the page shows no files) and the upload it
        explained; the session's previous answer is removed, and its previous upload if it changed.
        Without a session (an API call) the answer is left to the age sweep."""
        upload_path = self._upload_path(upload)
        with self._lock:
            if session is None:
                if upload_path is not None and not self._held(upload_path):
                    self._remove_upload(upload_path)
                return
            if session in self._ended:  # the tab closed while this answer was being computed
                self._remove_dir(answer)
                if upload_path is not None and not self._held(upload_path):
                    self._remove_upload(upload_path)
                return
            old = self._answers.pop(session, None)
            if old is not None and old != answer:
                self._remove_dir(old)
            if answer is not None:
                self._answers[session] = answer
            previous = self._uploads.pop(session, None)
            if upload_path is not None:
                self._uploads[session] = upload_path
            if previous is not None and previous != upload_path and not self._held(previous):
                self._remove_upload(previous)

    def end_session(self, session: str | None) -> None:
        """The session's tab closed: remove its answer and the upload it showed (unless another session shows
        the same upload)."""
        if session is None:
            return
        with self._lock:
            self._remove_dir(self._answers.pop(session, None))
            upload = self._uploads.pop(session, None)
            if upload is not None and not self._held(upload):
                self._remove_upload(upload)
            now = time.time()
            self._ended[session] = now
            for s, t in list(self._ended.items()):
                if now - t > self.max_age_s:
                    del self._ended[s]

    def sweep(self) -> None:
        """Remove answers older than ``max_age_s`` (sessions that never ended), and the uploads they showed."""
        now = time.time()
        with self._lock:
            if self._root is None or not self._root.is_dir():
                return
            for folder in list(self._root.iterdir()):
                try:
                    stale = now - folder.stat().st_mtime > self.max_age_s
                except OSError:
                    continue
                if stale:
                    self._remove_dir(folder)
            for session, folder in list(self._answers.items()):
                if not folder.exists():
                    del self._answers[session]
                    upload = self._uploads.pop(session, None)
                    if upload is not None and not self._held(upload):
                        self._remove_upload(upload)

    def close(self) -> None:
        """Remove every answer and every upload still held (the server stops)."""
        with self._lock:
            for upload in set(self._uploads.values()):
                self._remove_upload(upload)
            self._answers.clear()
            self._uploads.clear()
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    # -- helpers ----------------------------------------------------------------------------------
    def _upload_path(self, upload: str | os.PathLike | None) -> Optional[Path]:
        """``upload`` when it may be removed later: a file of gradio's cache that is not an example clip."""
        if not upload:
            return None
        try:
            p = Path(upload).resolve()
        except (OSError, RuntimeError):
            return None
        if not _inside(p, self.cache_dir) or p == self.cache_dir or (self._root and _inside(p, self._root)):
            return None
        if any(p == q or _inside(p, q) for q in self.protect):
            return None
        try:
            size = p.stat().st_size
            for q in self.protect:
                if q.is_file() and q.stat().st_size == size and filecmp.cmp(p, q, shallow=False):
                    return None  # gradio's copy of an example clip: other sessions use it too
        except OSError:
            return None
        return p

    def _held(self, upload: Path) -> bool:
        return upload in self._uploads.values()

    def _remove_upload(self, upload: Path) -> None:
        try:
            upload.unlink()
        except OSError:
            return
        parent = upload.parent  # gradio puts each upload in a folder of its own (named by its hash)
        if parent != self.cache_dir and _inside(parent, self.cache_dir):
            try:
                parent.rmdir()  # only when empty
            except OSError:
                pass

    def _remove_dir(self, folder: Path | None) -> None:
        if folder is not None and self._root is not None and _inside(folder, self._root) and folder != self._root:
            shutil.rmtree(folder, ignore_errors=True)


def _stem(name: str) -> str:
    """A file-name-safe stem of an upload's name (for the names of the files the page offers)."""
    stem = re.sub(r"[^\w.-]+", "_", Path(name).stem).strip("._")[:60]
    return stem or "audio"


def _write_wav(path: Path, player: tuple[int, np.ndarray]) -> str:
    import soundfile as sf

    sr, samples = player
    sf.write(str(path), samples, int(sr), subtype="PCM_16")
    return str(path)


def _write_png(path: Path, image) -> str:
    image.save(str(path), format="PNG")
    return str(path)


class Demo:
    """The demo's callbacks around one :class:`Explainer`, with upload limits.

    Args:
        explainer: an Explainer with a decoder.
        max_upload_mb: files larger than this are refused.
        max_seconds: clips longer than this are refused.
        examples_dir: folder of example clips (``*.wav|flac|ogg|mp3``) and an optional ``prompts.txt``.
        files: where the page's files go (:class:`AnswerFiles`); :func:`build_app` sets one in gradio's cache.
    """

    def __init__(self, explainer: Explainer, max_upload_mb: float = MAX_UPLOAD_MB, max_seconds: float = MAX_SECONDS,
                 examples_dir: str | os.PathLike | None = EXAMPLES_DIR, files: AnswerFiles | None = None):
        if explainer.decoder is None:
            raise LmacError("the demo needs a trained decoder: pass --decoder RUN_DIR or an embedded model")
        self.explainer = explainer
        self.max_upload_mb = float(max_upload_mb)
        self.max_seconds = float(max_seconds)
        self.examples_dir = Path(examples_dir) if examples_dir else None
        self.baselines = baseline_names()
        self.files = files

    # -- page content ---------------------------------------------------------------------------
    def examples(self) -> list[Path]:
        d = self.examples_dir
        if d is None or not d.is_dir():
            return []
        return sorted(p for p in d.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())

    def default_prompts(self) -> list[str]:
        """``prompts.txt`` of the examples folder, else a few ESC-50 classes."""
        f = self.examples_dir / "prompts.txt" if self.examples_dir else None
        if f is not None and f.is_file():
            lines = [line.strip() for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
            if lines:
                return lines
        from .datasets import eval_prompt

        return [eval_prompt(c) for c in DEFAULT_PROMPTS]

    def limits_text(self) -> str:
        return f"Up to {self.max_upload_mb:g} MB and {self.max_seconds:g} s per clip (wav, flac, ogg, mp3)."

    def model_text(self) -> str:
        c = self.explainer.clap
        meta = self.explainer.meta
        step = f", decoder step {meta['step']}" if "step" in meta else ""
        return (f"Model: CLAP backend `{c.spec}` ({c.sample_rate} Hz, {c.num_samples / c.sample_rate:g} s windows, "
                f"{c.domain_name} masking{step}).")

    def choices(self, prompts_text: str | None, target: str | None = None, contrast: str | None = None,
                ) -> tuple[list[str], str, list[str], str]:
        """Dropdown choices for the prompts typed so far: ``(targets, target, contrasts, contrast)``, keeping
        the current selections while they are still among the prompts."""
        prompts = list(dict.fromkeys(line.strip() for line in (prompts_text or "").splitlines() if line.strip()))
        targets, contrasts = [TOP] + prompts, [NONE] + prompts
        return (targets, target if target in targets else TOP, contrasts, contrast if contrast in contrasts else NONE)

    # -- the work ---------------------------------------------------------------------------------
    def check_upload(self, path: str | os.PathLike | None) -> Path:
        """Refuse missing, too large or too long files before decoding them whole."""
        import soundfile as sf

        if not path:
            raise AudioError("no audio: upload or record a clip, or pick an example")
        p = Path(path)
        if not p.is_file():
            raise AudioError("the uploaded file is gone; upload it again")
        mb = p.stat().st_size / 1e6
        if mb > self.max_upload_mb:
            raise AudioError(f"the file is {mb:.1f} MB; the limit is {self.max_upload_mb:g} MB")
        try:
            seconds = sf.info(str(p)).duration
        except Exception:
            raise AudioError(f"cannot read {p.name}: use wav, flac, ogg or mp3") from None
        if seconds > self.max_seconds:
            raise AudioError(f"the clip is {seconds:.1f} s long; the limit is {self.max_seconds:g} s")
        return p

    def explain(self, audio_path: str | os.PathLike | None, prompts_text: str | None, target: str | None = None,
                contrast: str | None = None, baseline: str | None = None, top_k: Any = 0) -> DemoResult:
        """Scores, LMAC-ZS explanation, (optionally) a baseline's and (``top_k`` ≥ 1) one explanation per
        top-k prompt for one clip. Raises :class:`LmacError` (messages name the file by its base name only)."""
        from .audio import load_audio

        path = self.check_upload(audio_path)
        prompts = parse_prompts(prompts_text)
        k = parse_top_k(top_k)
        target = None if target in (None, "", TOP) else target
        contrast = None if contrast in (None, "", NONE) else contrast
        if baseline not in (None, "", NONE) and baseline not in self.baselines:
            raise LmacError(f"unknown baseline {baseline!r}; available: {', '.join(self.baselines) or 'none'}")
        # decoded once, labelled by its base name (errors about the audio never show the server's folders)
        sr = self.explainer.clap.sample_rate
        wave = load_audio(path, sr, name=path.name)
        e = self.explainer.explain(wave, prompts, target=target, contrast=contrast, sample_rate=sr)
        e.source = path.name
        players = _players(e)
        what = f"'{e.prediction}'" + (f" rather than '{e.contrast}'" if e.contrast else "")
        status = (f"Explained {what} (p = {e.scores[e.prediction]:.3f}; mask mean {e.mask_mean:.3f}) in "
                  f"{path.name}, {len(e.audio) / e.sample_rate:.1f} s.")
        if not e.listenable:
            status += " Mel-domain mask: the audio is an approximate resynthesis."
        result = DemoResult(scores=e.scores, status=status, figure=figure_image(e), original=players.get("original"),
                            explanation=players["explanation"], residual=players["residual"], lmac=e)
        if baseline not in (None, "", NONE):
            b = self.explainer.explain_baseline(wave, prompts, baseline, target=e.prediction, sample_rate=sr)
            b.source = path.name
            bp = _players(b)
            result.baseline, result.baseline_figure = b, figure_image(b)
            result.baseline_explanation, result.baseline_residual = bp["explanation"], bp["residual"]
            result.status += f" Baseline {baseline} explains '{b.prediction}'"
            result.status += " alone (baselines have no contrast)." if e.contrast else "."
        if k:
            for t in self.explainer.explain_topk(wave, prompts, k=k, sample_rate=sr):
                t.source = path.name
                rank = int(t.extra.get("rank", len(result.topk) + 1))
                title = (f"**#{rank} '{t.prediction}'** — p = {t.scores[t.prediction]:.3f}, "
                         f"mask mean {t.mask_mean:.3f}")
                result.topk.append(TopkItem(rank=rank, title=title, figure=figure_image(t),
                                            explanation=_players(t)["explanation"], lmac=t))
            names = ", ".join(f"'{t.lmac.prediction}'" for t in result.topk)
            result.status += f" Top-{len(result.topk)}: {names}"
            result.status += f" (all {len(prompts)} prompts)." if k > len(prompts) else "."
        return result

    def _error(self, exc: BaseException, audio_path: Any) -> DemoResult:
        """The one-line status of a failed request (no traceback, no server path)."""
        paths = [audio_path if isinstance(audio_path, (str, os.PathLike)) else None, self.examples_dir]
        if isinstance(exc, LmacError):
            return DemoResult(scores=None, status=f"**Error:** {public_message(str(exc), paths)}")
        log.exception("explanation failed")  # the traceback goes to the server log only
        first = public_message(str(exc), paths)
        return DemoResult(scores=None, status=f"**Unexpected error** ({type(exc).__name__}: {first}); "
                                              "details are in the server log.")

    def run(self, audio_path, prompts_text, target=None, contrast=None, baseline=None, top_k=0) -> tuple:
        """:meth:`explain` for the page: errors become a message in the status line, outputs are cleared.
        Values in :data:`OUTPUT_ORDER`, then :data:`TOPK_ORDER` per top-k slot (see :meth:`DemoResult.outputs`)."""
        try:
            return self.explain(audio_path, prompts_text, target, contrast, baseline, top_k).outputs()
        except Exception as exc:
            return self._error(exc, audio_path).outputs()

    def answer(self, audio_path, prompts_text, target=None, contrast=None, baseline=None, top_k=0,
               session: str | None = None) -> DemoResult:
        """:meth:`run` as the page needs it: figures and players written as files into a fresh answer folder
        of :attr:`files` (the values become paths), the session's previous answer removed (see
        :class:`AnswerFiles`). Never raises."""
        if self.files is None:
            self.files = AnswerFiles(gradio_cache_dir(), protect=self.examples())
        try:
            result = self.explain(audio_path, prompts_text, target, contrast, baseline, top_k)
        except Exception as exc:
            self.files.keep(session, None, audio_path)
            return self._error(exc, audio_path)
        folder = None
        try:
            folder = self.files.new_answer()
            self._write_files(result, folder)
        except Exception as exc:  # a full disk, say: no half-written answer stays behind
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            self.files.keep(session, None, audio_path)
            return self._error(exc, audio_path)
        self.files.keep(session, folder, audio_path)
        return result

    @staticmethod
    def _write_files(result: DemoResult, folder: Path) -> None:
        """Replace ``result``'s images and ``(rate, samples)`` players by files in ``folder``."""
        stem = _stem(result.lmac.source if result.lmac is not None else "audio")
        method = _stem(str(result.baseline.extra.get("method", "baseline"))) if result.baseline else "baseline"
        names = {"figure": f"{stem}.lmac-zs.png", "original": f"{stem}.original.wav",
                 "explanation": f"{stem}.explanation.wav", "residual": f"{stem}.residual.wav",
                 "baseline_figure": f"{stem}.{method}.png", "baseline_explanation": f"{stem}.{method}.explanation.wav",
                 "baseline_residual": f"{stem}.{method}.residual.wav"}
        for name in FILE_OUTPUTS:
            value = getattr(result, name)
            if value is not None:
                write = _write_png if name.endswith("figure") else _write_wav
                setattr(result, name, write(folder / names[name], value))
        for item in result.topk:
            item.figure = _write_png(folder / f"{stem}.top{item.rank}.png", item.figure)
            item.explanation = _write_wav(folder / f"{stem}.top{item.rank}.explanation.wav", item.explanation)


def build_app(demo: Demo):
    """The gradio Blocks page for ``demo`` (not launched). Its files go to an :class:`AnswerFiles` in gradio's
    cache (``demo.files`` unless already set), removed per session as described there."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry requests
    import gradio as gr

    if demo.files is None:
        demo.files = AnswerFiles(gradio_cache_dir(), protect=demo.examples())
    prompts0 = demo.default_prompts()
    targets0, _, contrasts0, _ = demo.choices("\n".join(prompts0))
    baselines = [NONE] + demo.baselines
    # delete_cache: gradio's own sweep of what it cached (uploads never explained, example copies) as a backstop
    with gr.Blocks(title="LMAC-ZS: listen to what a zero-shot audio classifier hears",
                   analytics_enabled=False, delete_cache=(600, int(MAX_AGE_S))) as app:
        gr.Markdown("## LMAC-ZS — listenable explanations of a zero-shot audio classifier\n"
                    "Upload or record a clip, write the candidate classes (one prompt per line) and press "
                    "**Explain**: you get the zero-shot scores, the mask LMAC-ZS puts on the spectrogram, and "
                    "the *explanation* (the part of the sound the classifier relies on) and the *residual* "
                    f"(what the mask removed) to listen to.  \n{demo.limits_text()} {demo.model_text()}",
                    elem_id="intro")
        with gr.Row():
            with gr.Column(scale=1):
                audio_in = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio clip",
                                    elem_id="audio-input")
                examples = demo.examples()
                if examples:
                    gr.Examples(examples=[[str(p)] for p in examples], inputs=[audio_in], label="Example clips")
                prompts = gr.Textbox(value="\n".join(prompts0), lines=6, max_lines=30, label="Prompts (one per line)",
                                     elem_id="prompts")
                with gr.Row():
                    target = gr.Dropdown(targets0, value=TOP, label="Explain", elem_id="target")
                    contrast = gr.Dropdown(contrasts0, value=NONE, label="rather than", elem_id="contrast")
                with gr.Row():
                    baseline = gr.Dropdown(baselines,
                                           value=DEFAULT_BASELINE if DEFAULT_BASELINE in baselines else NONE,
                                           label="Compare with a baseline", elem_id="baseline",
                                           info=None if demo.baselines else "no baselines installed")
                    top_k = gr.Slider(0, MAX_TOPK, value=0, step=1, label="Top-k (0 = off)", elem_id="topk",
                                      info="also explain each of the k top-scoring prompts")
                button = gr.Button("Explain", variant="primary", elem_id="explain")
                status = gr.Markdown(demo.limits_text(), elem_id="status")
            with gr.Column(scale=1):
                scores = gr.Label(label="Zero-shot scores", num_top_classes=10, elem_id="scores")
                original = gr.Audio(label="Original (as the model hears it)", interactive=False,
                                    elem_id="audio-original")
        # Figures stacked at full width (same time axis, one above the other), players side by side.
        gr.Markdown("### LMAC-ZS and a baseline, side by side")
        figure = gr.Image(label="LMAC-ZS: spectrogram · mask · masked spectrogram", type="filepath",
                          interactive=False, elem_id="figure", format="png", show_label=False)
        b_figure = gr.Image(label="Baseline saliency used as a mask", type="filepath", interactive=False,
                            elem_id="baseline-figure", format="png", show_label=False)
        with gr.Row(equal_height=False):
            with gr.Column():
                explanation = gr.Audio(label="LMAC-ZS explanation (what the mask keeps)", interactive=False,
                                       elem_id="audio-explanation")
                residual = gr.Audio(label="LMAC-ZS residual (what the mask removes)", interactive=False,
                                    elem_id="audio-residual")
            with gr.Column():
                b_explanation = gr.Audio(label="Baseline explanation", interactive=False,
                                         elem_id="baseline-explanation")
                b_residual = gr.Audio(label="Baseline residual", interactive=False, elem_id="baseline-residual")
        # Top-k: one row per top-scoring prompt (figure, then its title and player), hidden while unused.
        topk_heading = gr.Markdown("### Top-k: one explanation per top-scoring prompt", visible=False,
                                   elem_id="topk-heading")
        slots = []
        for i in range(1, MAX_TOPK + 1):
            with gr.Row(visible=False, equal_height=False, elem_id=f"topk-{i}") as row:
                with gr.Column(scale=3, min_width=480):
                    slot_figure = gr.Image(type="filepath", interactive=False, format="png", show_label=False,
                                           label=f"Top-{i} explanation", elem_id=f"topk-figure-{i}")
                with gr.Column(scale=1, min_width=240):
                    slot_title = gr.Markdown(elem_id=f"topk-title-{i}")
                    slot_audio = gr.Audio(label=f"Top-{i} explanation (what the mask keeps)", interactive=False,
                                          elem_id=f"topk-audio-{i}")
            slots.append({"row": row, "title": slot_title, "figure": slot_figure, "explanation": slot_audio})

        def update_choices(text, t, c):
            ts, t, cs, c = demo.choices(text, t, c)
            return gr.update(choices=ts, value=t), gr.update(choices=cs, value=c)

        prompts.change(update_choices, [prompts, target, contrast], [target, contrast], queue=False)
        outputs = {"scores": scores, "figure": figure, "original": original, "explanation": explanation,
                   "residual": residual, "baseline_figure": b_figure, "baseline_explanation": b_explanation,
                   "baseline_residual": b_residual, "status": status}

        def on_explain(audio, text, t, c, b, k, request=None):
            result = demo.answer(audio, text, t, c, b, k, session=getattr(request, "session_hash", None))
            values = [getattr(result, name) for name in OUTPUT_ORDER] + [gr.update(visible=bool(result.topk))]
            for i, slot in enumerate(slots):
                item = result.topk[i] if i < len(result.topk) else None
                values.append(gr.update(visible=item is not None))
                values += [getattr(item, name) if item else None for name in TOPK_ORDER]
            return values

        def on_unload(request=None):
            demo.files.end_session(getattr(request, "session_hash", None))

        # gradio passes the request to a parameter annotated gr.Request (a real class, not a string annotation)
        on_explain.__annotations__ = {"request": gr.Request}
        on_unload.__annotations__ = {"request": gr.Request}
        slot_outputs = [slot[name] for slot in slots for name in ("row",) + TOPK_ORDER]
        button.click(on_explain, [audio_in, prompts, target, contrast, baseline, top_k],
                     [outputs[name] for name in OUTPUT_ORDER] + [topk_heading] + slot_outputs,
                     concurrency_limit=1)
        app.unload(on_unload)
    return app


def serve(demo: Demo, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Build and launch the page (blocks until interrupted); the page's files are removed when it stops."""
    app = build_app(demo)
    allowed = [str(demo.examples_dir)] if demo.examples() else None
    try:
        app.queue(max_size=16).launch(server_name=host, server_port=port, share=False, inbrowser=False,
                                      max_file_size=f"{demo.max_upload_mb:g}mb", allowed_paths=allowed,
                                      ssr_mode=False, show_error=False)
    finally:
        if demo.files is not None:
            demo.files.close()


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise LmacError("the web demo needs gradio: pip install 'lmaczs[web]'") from None
    from .cli import _explainer

    demo = Demo(_explainer(args, need_decoder=True), max_upload_mb=args.max_upload_mb,
                max_seconds=args.max_seconds, examples_dir=args.examples)
    print(f"LMAC-ZS demo on http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    serve(demo, args.host, args.port)
    return 0


def register_cli(subparsers) -> None:
    """Add ``serve`` to the ``lmac-zs`` command line."""
    from .cli import _add_model_args

    p = subparsers.add_parser("serve", help="web demo: upload or record audio, see and hear explanations")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_MB, help="largest upload in MB (default: 20)")
    p.add_argument("--max-seconds", type=float, default=MAX_SECONDS, help="longest clip in seconds (default: 60)")
    p.add_argument("--examples", default=str(EXAMPLES_DIR), help="folder of example clips (default: shipped ones)")
    _add_model_args(p)
    p.set_defaults(func=cmd_serve)
