"""Explainer and Explanation: zero-shot scores, LMAC-ZS masks and listenable audio for one clip.

    ex = Explainer.from_pretrained()                      # embedded default model, offline
    e = ex.explain("dog.wav", ["dog barking", "rain"])
    e.scores, e.prediction, e.mask, e.audio, e.save("out/")

Clips longer than ``Explainer.stream_over_s`` (60 s) are explained in bounded memory by :mod:`lmaczs.longaudio`:
the same results, with the Explanation's long arrays held as read-only memmaps in a temporary folder.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from . import __version__
from .audio import AudioInput, load_audio
from .checkpoint import atomic_write, atomic_write_text, load_decoder
from .checks import check_device
from .clap import ClapBackend, load_backend
from .decoder import MaskDecoder
from .errors import CheckpointError, PromptError
from .timeline import MERGE_GAP, MIN_DURATION, THRESHOLD, Segment, Timeline, window_activity
from .windows import stitch, window_starts

ASSETS = Path(__file__).parent / "assets"


def check_prompts(prompts: Sequence[str] | str) -> list[str]:
    """Validate a prompt list: at least one, non-empty, no duplicates."""
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = [p.strip() if isinstance(p, str) else p for p in (prompts or [])]
    if not prompts:
        raise PromptError("give at least one prompt (e.g. -p 'dog barking' -p 'rain')")
    if any(not isinstance(p, str) or not p for p in prompts):
        raise PromptError("prompts must be non-empty strings")
    dup = sorted({p for p in prompts if prompts.count(p) > 1})
    if dup:
        raise PromptError(f"duplicate prompts: {dup}")
    return prompts


@dataclass
class Explanation:
    """An LMAC-ZS explanation of one clip.

    Attributes:
        scores: zero-shot probability of every prompt (softmax of logit_scale × cosine), input order.
        prediction: the prompt explained (the top one unless a target was given).
        mask: ``(T, F)`` mask in [0, 1] on the masking domain of the whole clip.
        audio: ``(N,)`` listenable explanation, same length and rate as the (resampled) input, original phase.
        residual: ``(N,)`` what the mask removed (the input minus the explanation's share).
        sample_rate: rate of ``audio``.
        spectrogram: ``(T, F)`` the masking-domain input X, for plots.
        window_scores: per-window zero-shot probabilities ``(W, P)`` for clips longer than one window.
        contrast: the prompt explained against ("A rather than B"), if any.
        original: ``(N,)`` the input as the model heard it (mono, resampled to ``sample_rate``), for listening
            side by side; ``None`` when not kept.
        timeline: where each prompt is active, frame by frame (:class:`lmaczs.timeline.Timeline`); ``None``:
            :meth:`get_timeline` makes one from the mask.
        freqs: ``(F,)`` centre frequency in Hz of each mask row (``None``: ``F`` bins from 0 to the Nyquist
            frequency).
        hop_s: seconds between mask frames (``None``: ``duration / (T − 1)``).

    Long clips (streamed, ``extra["streamed"]``): ``mask``, ``spectrogram``, ``audio``, ``residual`` and
    ``original`` are read-only ``numpy.memmap`` arrays on files in a temporary folder, which is deleted when the
    Explanation is garbage-collected. Slicing them reads only what is sliced; :meth:`save`, :meth:`figure` and
    :attr:`mask_mean` read them in blocks (or use what the stream kept), so they need no more memory than a short
    clip. ``np.asarray(e.mask)`` on a 30-minute clip would load 0.3 GB.
    """

    scores: dict[str, float]
    prediction: str
    mask: np.ndarray
    audio: np.ndarray
    residual: np.ndarray
    sample_rate: int
    spectrogram: np.ndarray
    window_scores: np.ndarray
    backend: dict
    source: str = "audio"
    contrast: Optional[str] = None
    listenable: bool = True
    extra: dict = field(default_factory=dict)
    original: Optional[np.ndarray] = None
    timeline: Optional[Timeline] = None
    freqs: Optional[np.ndarray] = None
    hop_s: Optional[float] = None
    _store: dict = field(default_factory=dict, repr=False, compare=False)  # streamed: work folder, preview, stats

    @property
    def mask_mean(self) -> float:
        if "mask_mean" not in self._store and isinstance(self.mask, np.memmap):
            from .longaudio import array_stats

            self._store["mask_mean"] = array_stats(self.mask)["mean"]
        if "mask_mean" in self._store:
            return float(self._store["mask_mean"])
        return float(self.mask.mean())

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate

    def _hop_s(self) -> float:
        return float(self.hop_s) if self.hop_s else self.duration_s / max(1, self.mask.shape[0] - 1)

    def get_timeline(self) -> Timeline:
        """:attr:`timeline`, or (when there is none) the explained prompt's mask activity, ungated: the mean
        over frequency of ``mask`` at each frame."""
        if self.timeline is not None:
            return self.timeline
        from .longaudio import row_blocks

        act = np.concatenate([rows.mean(1, dtype=np.float64) for _, rows in row_blocks(self.mask)])
        return Timeline(prompts=[self.prediction], hop_s=self._hop_s(), duration_s=self.duration_s,
                        activity=act[:, None].astype(np.float32), scores=None, gate=None)

    def labels(self, threshold: float = THRESHOLD, min_duration: float = MIN_DURATION,
               merge_gap: float = MERGE_GAP, prompts: Sequence[str] | None = None) -> list[Segment]:
        """Active spans ``(start_s, end_s, prompt)`` of every prompt in the timeline (or of ``prompts``), sorted by
        start: where each prompt's gated mask covers at least ``threshold`` of the frequencies on average (see
        :mod:`lmaczs.timeline`)."""
        return self.get_timeline().segments(threshold, min_duration, merge_gap, prompts)

    def save_labels(self, out_dir: str | os.PathLike, stem: str | None = None, threshold: float = THRESHOLD,
                    min_duration: float = MIN_DURATION, merge_gap: float = MERGE_GAP) -> dict[str, Path]:
        """Write ``<stem>.labels.txt`` (an Audacity label track: ``start<TAB>end<TAB>prompt`` per line) and
        ``<stem>.timeline.csv`` (per frame: time, each prompt's activity, score and 0/1 active). Returns both."""
        out = Path(out_dir)
        stem = stem or Path(self.source).stem or "audio"
        tl = self.get_timeline()
        kw = {"threshold": threshold, "min_duration": min_duration, "merge_gap": merge_gap}
        return {"labels": tl.write_audacity(out / f"{stem}.labels.txt", **kw),
                "timeline": tl.write_csv(out / f"{stem}.timeline.csv", **kw)}

    def to_dict(self) -> dict:
        import transformers

        return {"source": self.source, "prediction": self.prediction, "contrast": self.contrast,
                "scores": self.scores, "mask_mean": self.mask_mean, "mask_shape": list(self.mask.shape),
                "sample_rate": self.sample_rate, "duration_s": len(self.audio) / self.sample_rate,
                "listenable": self.listenable, "windows": len(self.window_scores),
                "window_scores": [dict(zip(self.scores, map(float, row))) for row in self.window_scores],
                "backend": self.backend, **self.extra,
                "versions": {"lmaczs": __version__, "torch": torch.__version__,
                             "transformers": transformers.__version__, "python": platform.python_version()}}

    def figure(self, log_freq: bool = False):
        """The figure (:func:`lmaczs.viz.explanation_figure`): input and explanation as dB spectrograms on one
        scale and the mask; clips over 20 s stacked at full width with the per-prompt timeline. ``log_freq``:
        logarithmic frequency axis."""
        from .viz import explanation_figure, preview_of

        title = f"{self.source}: '{self.prediction}' (p = {self.scores[self.prediction]:.2f})"
        if self.contrast:
            title += f" rather than '{self.contrast}'"
        if self.extra.get("method"):
            title = f"[{self.extra['method']}] {title}"
        domain = self.backend.get("domain", "stft") if isinstance(self.backend, dict) else "stft"
        preview = self._store.get("preview") or preview_of(self.spectrogram, self.mask, domain)
        f = self.mask.shape[1]
        freqs = self.freqs if self.freqs is not None else np.linspace(0.0, self.sample_rate / 2, f)
        return explanation_figure(preview, freqs, self._hop_s(), self.duration_s, title, mask_mean=self.mask_mean,
                                  max_freq=self.sample_rate / 2, log_freq=log_freq, timeline=self.get_timeline(),
                                  explained=self.prediction)

    def save(self, out_dir: str | os.PathLike, stem: str | None = None, *, labels: bool = False,
             log_freq: bool = False) -> dict[str, Path]:
        """Write ``<stem>.explanation.wav``, ``<stem>.png`` and ``<stem>.json`` atomically (and with ``labels``
        :meth:`save_labels`' two files). Returns the paths. A streamed explanation is written block by block."""
        import soundfile as sf

        from .viz import save_figure

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = stem or Path(self.source).stem or "audio"
        paths = {"wav": out / f"{stem}.explanation.wav", "png": out / f"{stem}.png", "json": out / f"{stem}.json"}
        if isinstance(self.audio, np.memmap):
            atomic_write(paths["wav"], self._write_wav_blocks)
        else:
            peak = float(np.abs(self.audio).max()) if self.audio.size else 0.0
            audio = self.audio / peak if peak > 1.0 else self.audio  # never clip
            atomic_write(paths["wav"], lambda tmp: sf.write(tmp, audio.astype(np.float32), self.sample_rate,
                                                            format="WAV", subtype="FLOAT"))
        save_figure(self.figure(log_freq=log_freq), paths["png"])
        atomic_write_text(paths["json"], json.dumps(self.to_dict(), indent=2))
        if labels:
            paths.update(self.save_labels(out, stem))
        return paths

    def _write_wav_blocks(self, tmp: str) -> None:
        """The explanation as a float WAV (RF64 beyond 4 GB), from a memmap in blocks, peak-limited as in save."""
        import soundfile as sf

        from .longaudio import array_stats, row_blocks

        if "audio_peak" not in self._store:
            self._store["audio_peak"] = array_stats(self.audio)["abs_max"]
        peak = float(self._store["audio_peak"])
        fmt = "RF64" if 4 * len(self.audio) > 2**32 - 2**20 else "WAV"
        with sf.SoundFile(tmp, "w", samplerate=self.sample_rate, channels=1, format=fmt, subtype="FLOAT") as fh:
            for _, block in row_blocks(self.audio, 1 << 20):
                fh.write((block / peak if peak > 1.0 else block).astype(np.float32))


@dataclass
class _Encoded:
    """One clip loaded, windowed and encoded: what every explanation of it shares."""

    wave: torch.Tensor  # (N,) at the backend's rate
    starts: list[int]  # window start samples
    name: str
    prompts: list[str]
    x: torch.Tensor  # (W, T, F) masking-domain windows
    hidden: list[torch.Tensor]  # 4 × (W, C, T_k, F_k)
    text: torch.Tensor  # (P, D)
    window_probs: torch.Tensor  # (W, P)
    probs: torch.Tensor  # (P,) mean over windows


class Explainer:
    """Zero-shot classification and LMAC-ZS explanations with one CLAP backend and its trained decoder.

    Args:
        clap: a :class:`ClapBackend` (see :func:`lmaczs.clap.load_backend`).
        decoder: a :class:`MaskDecoder` trained for this backend (``None``: classify only).
        device: torch device for both.

    Long clips: clips longer than :attr:`stream_over_s` seconds are explained in bounded memory
    (:mod:`lmaczs.longaudio`; ``explain(..., stream=True/False)`` decides per call), :attr:`chunk_windows` windows
    at a time, with temporary files in :attr:`work_dir` (``None``: the system's temp folder).
    """

    stream_over_s: float = 60.0
    chunk_windows: int = 8
    work_dir: Optional[str] = None

    def __init__(self, clap: ClapBackend, decoder: MaskDecoder | None = None, device: str | torch.device = "cpu",
                 meta: dict | None = None):
        device = check_device(device)  # a clear error for "cuda" without CUDA or a misspelt device
        self.clap = clap.to(device).eval()
        self.device = device
        self.meta = meta or {}
        if decoder is not None:
            cfg = decoder.config
            want = (list(map(tuple, clap.hidden_shapes())), tuple(clap.mask_shape()), clap.embed_dim)
            have = (list(map(tuple, cfg.hidden_shapes)), tuple(cfg.mask_shape), cfg.text_dim)
            if want != have:
                raise CheckpointError(f"decoder does not match backend {clap.spec} ({clap.domain_name} domain): "
                                      f"it expects hidden/mask/text shapes {have}, the backend gives {want}")
            decoder = decoder.to(device).eval()
        self.decoder = decoder

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name: str = "default", device: str = "cpu") -> "Explainer":
        """The embedded models shipped with the package: ``"default"`` or ``"esc50-eval"`` (offline)."""
        run = ASSETS / name
        if not (run / "decoder.json").is_file():
            raise CheckpointError(f"no embedded model named {name!r}; available: "
                                  f"{sorted(p.name for p in ASSETS.glob('*') if (p / 'decoder.json').is_file())}")
        return cls.load(name, run, device=device)

    @classmethod
    def load(cls, clap_spec: str | None, run_dir: str | os.PathLike, device: str = "cpu") -> "Explainer":
        """A backend spec (``None``: the one the decoder was trained on) and a run directory from ``train``."""
        check_device(device)  # before loading anything
        decoder, meta = load_decoder(Path(run_dir))
        trained = meta.get("backend", {})
        spec = clap_spec or trained.get("spec")
        if not spec:
            raise CheckpointError(f"{run_dir} does not say which CLAP it was trained on; pass --clap")
        backend = load_backend(spec, trained.get("domain", "stft"))
        return cls(backend, decoder, device=device, meta=meta)

    # -- inference -----------------------------------------------------------------------------
    def _windows(self, audio: AudioInput, sample_rate: int | None) -> tuple[torch.Tensor, torch.Tensor, list[int], str]:
        """Load audio → ``(wave (N,), windows (W, num_samples), starts, name)``."""
        name = str(audio) if isinstance(audio, (str, os.PathLike)) else "audio"
        wave = load_audio(audio, self.clap.sample_rate, sample_rate, require_signal=True).to(self.device)
        starts = window_starts(wave.shape[0], self.clap.num_samples, self.clap.front.stft.hop_length)
        span = starts[-1] + self.clap.num_samples
        padded = torch.nn.functional.pad(wave, (0, max(0, span - wave.shape[0])))
        if len(starts) == 1:
            wins = self.clap.fit_window(wave)[None]
        else:
            wins = torch.stack([padded[s:s + self.clap.num_samples] for s in starts])
        return wave, self.clap.prepare(wins), starts, name

    @torch.no_grad()
    def _probs(self, embedding: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.clap.logit_scale * embedding @ text.T, dim=-1)

    def _use_stream(self, audio: AudioInput, sample_rate: int | None, stream: bool | None) -> bool:
        """Whether this clip takes the streamed path (:mod:`lmaczs.longaudio`): ``stream`` if given, else longer
        than :attr:`stream_over_s`. A clip of one window never streams."""
        if stream is False:
            return False
        from .longaudio import audio_seconds

        seconds = audio_seconds(audio, sample_rate)
        if seconds is None or seconds * self.clap.sample_rate <= self.clap.num_samples + 1:
            return False
        return bool(stream) or seconds > self.stream_over_s

    @torch.no_grad()
    def classify(self, audio: AudioInput, prompts: Sequence[str], sample_rate: int | None = None
                 ) -> dict[str, float]:
        """Zero-shot probabilities ``{prompt: p}`` (mean over windows for long clips)."""
        prompts = check_prompts(prompts)
        if self._use_stream(audio, sample_rate, None):
            from .longaudio import open_stream

            enc = open_stream(self, audio, sample_rate, prompts, spill=False)
            enc.work.cleanup()
            return {p: float(v) for p, v in zip(prompts, enc.probs)}
        _, wins, _, _ = self._windows(audio, sample_rate)
        x, _ = self.clap.analyze(wins)
        probs = self._probs(self.clap.encode_spec(x).embedding, self.clap.embed_text(prompts)).mean(0)
        return {p: float(v) for p, v in zip(prompts, probs)}

    @torch.no_grad()
    def explain(self, audio: AudioInput, prompts: Sequence[str], target: str | None = None,
                sample_rate: int | None = None, contrast: str | None = None, *, stream: bool | None = None
                ) -> Explanation:
        """Scores for all prompts and the LMAC-ZS explanation of one of them.

        Args:
            audio: a path, or a ``(N,)`` / ``(C, N)`` array with ``sample_rate``.
            prompts: candidate prompts (the zero-shot classes).
            target: the prompt to explain; default the top-scoring one.
            contrast: explain ``target`` *rather than* this prompt: keeps what supports the target and not the
                contrast prompt (mask ``M_target ⊙ (1 − M_contrast)``).
            stream: ``True``: the bounded-memory path of :mod:`lmaczs.longaudio` (memmapped arrays), ``False``: in
                memory; ``None``: streamed when the clip is longer than :attr:`stream_over_s`. Both give the
                same numbers (to float rounding).
        The Explanation's :attr:`~Explanation.timeline` has every prompt's activity (each prompt's mask is
        decoded in the windows where its score reaches the timeline's gate).
        """
        self._require_decoder()
        prompts = check_prompts(prompts)
        for p, what in ((target, "target"), (contrast, "contrast")):
            if p is not None and p not in prompts:
                raise PromptError(f"{what} prompt {p!r} is not among the prompts {prompts}")
        if self._use_stream(audio, sample_rate, stream):
            from .longaudio import explain_long

            return explain_long(self, audio, prompts, target, contrast, sample_rate)
        enc = self._encode(audio, prompts, sample_rate)
        chosen = target or prompts[int(enc.probs.argmax())]
        if contrast == chosen:
            raise PromptError("contrast prompt must differ from the explained prompt")
        masks = self._masks(enc.text[prompts.index(chosen)], enc.hidden)
        if contrast is not None:
            masks = masks * (1 - self._masks(enc.text[prompts.index(contrast)], enc.hidden))
        return self._finish(enc, masks, chosen, contrast, others=True)

    @torch.no_grad()
    def explain_topk(self, audio: AudioInput, prompts: Sequence[str], k: int = 3,
                     sample_rate: int | None = None, *, stream: bool | None = None) -> list[Explanation]:
        """Explanations of the ``k`` top-scoring prompts, best first (the audio is encoded once).

        Each has the same ``scores``; ``prediction`` is the prompt its mask explains. ``k`` above the number of
        prompts explains them all.
        """
        self._require_decoder()
        prompts = check_prompts(prompts)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise PromptError(f"top-k needs k >= 1, got {k!r}")
        if self._use_stream(audio, sample_rate, stream):
            from .longaudio import explain_topk_long

            return explain_topk_long(self, audio, prompts, k, sample_rate)
        enc = self._encode(audio, prompts, sample_rate)
        order = torch.argsort(enc.probs, descending=True, stable=True)[:k].tolist()
        out = []
        for rank, i in enumerate(order, 1):
            e = self._finish(enc, self._masks(enc.text[i], enc.hidden), prompts[i], None, others=True)
            e.extra["rank"] = rank
            out.append(e)
        return out

    @torch.no_grad()
    def explain_baseline(self, audio: AudioInput, prompts: Sequence[str], method: str,
                         target: str | None = None, sample_rate: int | None = None, **options) -> Explanation:
        """The same clip explained by a post-hoc saliency baseline (:mod:`lmaczs.baselines`) instead of
        LMAC-ZS: its ``(T, F)`` map in [0, 1] is used as the mask (same stitching and synthesis). Needs no
        decoder. ``extra["method"]`` names the method."""
        from .baselines import get_method

        saliency = get_method(method, **options)
        prompts = check_prompts(prompts)
        if target is not None and target not in prompts:
            raise PromptError(f"target prompt {target!r} is not among the prompts {prompts}")
        enc = self._encode(audio, prompts, sample_rate)
        chosen = target or prompts[int(enc.probs.argmax())]
        idx = torch.full((enc.x.shape[0],), prompts.index(chosen), dtype=torch.long, device=enc.x.device)
        masks = saliency(self.clap, enc.x, enc.text, idx)
        e = self._finish(enc, masks, chosen, None)
        e.extra["method"] = method.lower()
        return e

    def _require_decoder(self) -> None:
        if self.decoder is None:
            raise CheckpointError("this Explainer has no decoder: load one with Explainer.load(clap, run_dir)")

    def _encode(self, audio: AudioInput, prompts: list[str], sample_rate: int | None) -> "_Encoded":
        """Load, window and encode a clip once; score it against the prompts."""
        wave, wins, starts, name = self._windows(audio, sample_rate)
        x, _ = self.clap.analyze(wins)
        enc = self.clap.encode_spec(x)
        text = self.clap.embed_text(prompts)
        window_probs = self._probs(enc.embedding, text)
        return _Encoded(wave, starts, name, prompts, x, enc.hidden, text, window_probs, window_probs.mean(0))

    def _masks(self, text_row: torch.Tensor, hidden: list[torch.Tensor]) -> torch.Tensor:
        return self.decoder(text_row.expand(hidden[0].shape[0], -1), hidden)

    def _finish(self, enc: "_Encoded", masks: torch.Tensor, chosen: str, contrast: str | None,
                others: bool = False) -> Explanation:
        """Stitch window masks onto the whole clip and synthesise the listenable audio. The timeline has every
        prompt when ``others`` (their masks decoded where they pass the gate), else the explained prompt only."""
        wave, starts, name, window_probs = enc.wave, enc.starts, enc.name, enc.window_probs
        scores = dict(zip(enc.prompts, map(float, enc.probs)))
        n = wave.shape[0]
        stft_cfg = self.clap.front.stft
        norm_wave = self.clap.prepare(wave[None])[0]
        gain = wave.abs().max() / norm_wave.abs().max().clamp_min(1e-12)
        stft = stft_cfg.forward(norm_wave[None])
        domain = self.clap.domain
        x_full = domain.analyze(stft)[0]
        t_full = stft.shape[1]
        if len(starts) == 1:
            mask = masks[0, :t_full]
            if mask.shape[0] < t_full:  # input shorter than the window: frames beyond it are padding
                mask = torch.nn.functional.pad(mask, (0, 0, 0, t_full - mask.shape[0]))
        else:
            mask = stitch(masks, starts, stft_cfg.hop_length, t_full)
        audio = domain.synthesize(mask[None], stft, n)[0] * gain
        residual = domain.synthesize((1 - mask)[None], stft, n)[0] * gain
        from .longaudio import row_frequencies

        return Explanation(scores=scores, prediction=chosen, mask=mask.cpu().numpy(), audio=audio.cpu().numpy(),
                           residual=residual.cpu().numpy(), sample_rate=self.clap.sample_rate,
                           spectrogram=x_full.cpu().numpy(), window_scores=window_probs.cpu().numpy(),
                           backend=self.clap.describe(), source=name, contrast=contrast,
                           listenable=domain.listenable, original=wave.cpu().numpy(),
                           timeline=self._timeline(enc, masks, chosen, others, t_full),
                           freqs=row_frequencies(self.clap), hop_s=stft_cfg.hop_length / self.clap.sample_rate)

    def _timeline(self, enc: "_Encoded", masks: torch.Tensor, chosen: str, others: bool, t_full: int) -> Timeline:
        """Per-frame gated activity and scores (:mod:`lmaczs.timeline`), overlap-added like the masks."""
        i = enc.prompts.index(chosen)
        decode = None
        if others and self.decoder is not None:
            decode = lambda p, idx: self._masks(enc.text[p], [h[idx] for h in enc.hidden])  # noqa: E731
        cols = window_activity(masks, i, enc.window_probs.to(masks), decode)
        if len(enc.starts) == 1:
            full = cols[0, :t_full]
            full = torch.nn.functional.pad(full, (0, 0, 0, t_full - full.shape[0]))
        else:
            full = stitch(cols, enc.starts, self.clap.front.stft.hop_length, t_full)
        full = full.cpu().numpy()
        p = len(enc.prompts)
        keep = list(range(p)) if decode is not None else [i]
        sr = self.clap.sample_rate
        return Timeline(prompts=[enc.prompts[k] for k in keep], hop_s=self.clap.front.stft.hop_length / sr,
                        duration_s=enc.wave.shape[0] / sr, activity=full[:, keep].copy(),
                        scores=full[:, [p + k for k in keep]].copy())
