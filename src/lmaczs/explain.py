"""Explainer and Explanation: zero-shot scores, LMAC-ZS masks and listenable audio for one clip.

    ex = Explainer.from_pretrained()                      # embedded default model, offline
    e = ex.explain("dog.wav", ["dog barking", "rain"])
    e.scores, e.prediction, e.mask, e.audio, e.save("out/")
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
from .clap import ClapBackend, load_backend
from .decoder import MaskDecoder
from .errors import CheckpointError, PromptError
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

    @property
    def mask_mean(self) -> float:
        return float(self.mask.mean())

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

    def figure(self):
        from .viz import explanation_figure

        title = f"{self.source}: '{self.prediction}' (p = {self.scores[self.prediction]:.2f})"
        if self.contrast:
            title += f" rather than '{self.contrast}'"
        if self.extra.get("method"):
            title = f"[{self.extra['method']}] {title}"
        return explanation_figure(self.spectrogram, self.mask, len(self.audio) / self.sample_rate,
                                  self.sample_rate / 2, title)

    def save(self, out_dir: str | os.PathLike, stem: str | None = None) -> dict[str, Path]:
        """Write ``<stem>.explanation.wav``, ``<stem>.png`` and ``<stem>.json`` atomically. Returns the paths."""
        import soundfile as sf

        from .viz import save_figure

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = stem or Path(self.source).stem or "audio"
        paths = {"wav": out / f"{stem}.explanation.wav", "png": out / f"{stem}.png", "json": out / f"{stem}.json"}
        peak = float(np.abs(self.audio).max()) if self.audio.size else 0.0
        audio = self.audio / peak if peak > 1.0 else self.audio  # never clip
        atomic_write(paths["wav"], lambda tmp: sf.write(tmp, audio.astype(np.float32), self.sample_rate,
                                                        format="WAV", subtype="FLOAT"))
        save_figure(self.figure(), paths["png"])
        atomic_write_text(paths["json"], json.dumps(self.to_dict(), indent=2))
        return paths


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
    """

    def __init__(self, clap: ClapBackend, decoder: MaskDecoder | None = None, device: str | torch.device = "cpu",
                 meta: dict | None = None):
        self.clap = clap.to(device).eval()
        self.device = torch.device(device)
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
        wave = load_audio(audio, self.clap.sample_rate, sample_rate).to(self.device)
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

    @torch.no_grad()
    def classify(self, audio: AudioInput, prompts: Sequence[str], sample_rate: int | None = None
                 ) -> dict[str, float]:
        """Zero-shot probabilities ``{prompt: p}`` (mean over windows for long clips)."""
        prompts = check_prompts(prompts)
        _, wins, _, _ = self._windows(audio, sample_rate)
        x, _ = self.clap.analyze(wins)
        probs = self._probs(self.clap.encode_spec(x).embedding, self.clap.embed_text(prompts)).mean(0)
        return {p: float(v) for p, v in zip(prompts, probs)}

    @torch.no_grad()
    def explain(self, audio: AudioInput, prompts: Sequence[str], target: str | None = None,
                sample_rate: int | None = None, contrast: str | None = None) -> Explanation:
        """Scores for all prompts and the LMAC-ZS explanation of one of them.

        Args:
            audio: a path, or a ``(N,)`` / ``(C, N)`` array with ``sample_rate``.
            prompts: candidate prompts (the zero-shot classes).
            target: the prompt to explain; default the top-scoring one.
            contrast: explain ``target`` *rather than* this prompt: keeps what supports the target and not the
                contrast prompt (mask ``M_target ⊙ (1 − M_contrast)``).
        """
        self._require_decoder()
        prompts = check_prompts(prompts)
        for p, what in ((target, "target"), (contrast, "contrast")):
            if p is not None and p not in prompts:
                raise PromptError(f"{what} prompt {p!r} is not among the prompts {prompts}")
        enc = self._encode(audio, prompts, sample_rate)
        chosen = target or prompts[int(enc.probs.argmax())]
        if contrast == chosen:
            raise PromptError("contrast prompt must differ from the explained prompt")
        masks = self._masks(enc.text[prompts.index(chosen)], enc.hidden)
        if contrast is not None:
            masks = masks * (1 - self._masks(enc.text[prompts.index(contrast)], enc.hidden))
        return self._finish(enc, masks, chosen, contrast)

    @torch.no_grad()
    def explain_topk(self, audio: AudioInput, prompts: Sequence[str], k: int = 3,
                     sample_rate: int | None = None) -> list[Explanation]:
        """Explanations of the ``k`` top-scoring prompts, best first (the audio is encoded once).

        Each has the same ``scores``; ``prediction`` is the prompt its mask explains. ``k`` above the number of
        prompts explains them all.
        """
        self._require_decoder()
        prompts = check_prompts(prompts)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise PromptError(f"top-k needs k >= 1, got {k!r}")
        enc = self._encode(audio, prompts, sample_rate)
        order = torch.argsort(enc.probs, descending=True, stable=True)[:k].tolist()
        out = []
        for rank, i in enumerate(order, 1):
            e = self._finish(enc, self._masks(enc.text[i], enc.hidden), prompts[i], None)
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

    def _finish(self, enc: "_Encoded", masks: torch.Tensor, chosen: str, contrast: str | None) -> Explanation:
        """Stitch window masks onto the whole clip and synthesise the listenable audio."""
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
        return Explanation(scores=scores, prediction=chosen, mask=mask.cpu().numpy(), audio=audio.cpu().numpy(),
                           residual=residual.cpu().numpy(), sample_rate=self.clap.sample_rate,
                           spectrogram=x_full.cpu().numpy(), window_scores=window_probs.cpu().numpy(),
                           backend=self.clap.describe(), source=name, contrast=contrast,
                           listenable=domain.listenable, original=wave.cpu().numpy())
