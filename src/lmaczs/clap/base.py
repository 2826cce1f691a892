"""The small protocol every CLAP backend implements, and the masking domains built on it.

Data flow for one clip (shapes for a batch of B clips)::

    wave (B, N) ──MelFrontEnd.stft──► complex STFT S (B, T, F_lin)
         masking domain X (B, T, F): STFT domain X = log1p|S|  |  mel domain X = mel power |S|²·fb
         InputTf: X ──► model input (B, T, n_mels)  (the backend's own log-mel scaling)
         encode_features ──► AudioEncoding(embedding (B, D) unit norm, hidden = 4 × (B, C, T_k, F_k))
    prompts ──embed_text──► (P, D) unit norm;   zero-shot logits = logit_scale · emb_audio @ emb_textᵀ
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch
from torch import nn

from ..audio import Stft, peak_normalize

PadMode = Literal["zero", "repeat"]


@dataclass
class AudioEncoding:
    """Output of a backend's audio tower.

    Attributes:
        embedding: ``(B, D)`` projected, L2-normalised audio embedding.
        hidden: the encoder's last four representations, shallow → deep, each ``(B, C_k, T_k, F_k)``
            laid out time × frequency (backends that fold time, like HTSAT, unfold it).
    """

    embedding: torch.Tensor
    hidden: list[torch.Tensor]


class MelFrontEnd(nn.Module):
    """STFT → power → mel filterbank → the backend's log scaling, in torch.

    Args:
        stft: the analysis STFT (its rate is the backend's sample rate).
        mel_fb: ``(F_lin, n_mels)`` filterbank applied to the power spectrum.
        log_fn: maps mel power ``(B, T, n_mels)`` to the model's input scale.
        magnitude_power: 2.0 for a power spectrum (all shipped backends), 1.0 for magnitude.
    """

    def __init__(self, stft: Stft, mel_fb: torch.Tensor,
                 log_fn: Callable[[torch.Tensor], torch.Tensor], magnitude_power: float = 2.0):
        super().__init__()
        self.stft = stft
        self.register_buffer("mel_fb", mel_fb.float(), persistent=False)
        self.log_fn = log_fn
        self.magnitude_power = magnitude_power

    @property
    def n_mels(self) -> int:
        return int(self.mel_fb.shape[1])

    def mel_power(self, magnitude: torch.Tensor) -> torch.Tensor:
        """``(B, T, F_lin)`` linear magnitude → ``(B, T, n_mels)`` mel power."""
        return magnitude.pow(self.magnitude_power) @ self.mel_fb.to(magnitude.dtype)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` wave → ``(B, T, n_mels)`` model input."""
        return self.log_fn(self.mel_power(self.stft.forward(wave).abs()))


class MaskingDomain(ABC):
    """Where masks live. ``analyze`` gives X ≥ 0 with zero meaning silence; ``synthesize`` makes audio."""

    name: str
    listenable: bool

    def __init__(self, front: MelFrontEnd):
        self.front = front

    @abstractmethod
    def analyze(self, stft: torch.Tensor) -> torch.Tensor:
        """``(B, T, F_lin)`` complex STFT → ``(B, T, F)`` masking-domain spectrogram X ≥ 0."""

    @abstractmethod
    def input_transform(self, x: torch.Tensor) -> torch.Tensor:
        """InputTf: ``(B, T, F)`` masking-domain X (possibly masked) → ``(B, T, n_mels)`` model input."""

    @abstractmethod
    def linear_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """``(B, T, F)`` mask → ``(B, T, F_lin)`` mask on linear-frequency bins (identity for STFT)."""

    def masked_stft(self, mask: torch.Tensor, stft: torch.Tensor) -> torch.Tensor:
        """The complex STFT of ``mask ⊙ X`` with the original phase: ``(B, T, F)`` mask and ``(B, T, F_lin)``
        complex STFT → ``(B, T, F_lin)`` complex. Frame by frame (a chunk of frames gives those frames)."""
        lin = self.linear_mask(mask)
        mag = stft.abs()
        masked_mag = torch.expm1(lin * torch.log1p(mag))
        phase = stft / mag.clamp_min(1e-12)
        phase = torch.where(mag > 0, phase, torch.ones_like(phase))
        return masked_mag * phase

    def synthesize(self, mask: torch.Tensor, stft: torch.Tensor, length: int) -> torch.Tensor:
        """Listenable audio of ``mask ⊙ X`` with the original phase. Returns ``(B, length)``."""
        return self.front.stft.inverse(self.masked_stft(mask, stft), length)


class StftDomain(MaskingDomain):
    """Linear-frequency log1p-magnitude STFT (the listenable default): X = log1p|S|."""

    name = "stft"
    listenable = True

    def analyze(self, stft: torch.Tensor) -> torch.Tensor:
        return torch.log1p(stft.abs())

    def input_transform(self, x: torch.Tensor) -> torch.Tensor:
        return self.front.log_fn(self.front.mel_power(torch.expm1(x)))

    def linear_mask(self, mask: torch.Tensor) -> torch.Tensor:
        return mask


class MelDomain(MaskingDomain):
    """The backend's mel *power* (before the log): X = |S|²·fb. Audio via the filterbank's transpose."""

    name = "mel"
    listenable = False  # approximate audio only: the mask is spread back onto linear bins

    def analyze(self, stft: torch.Tensor) -> torch.Tensor:
        return self.front.mel_power(stft.abs())

    def input_transform(self, x: torch.Tensor) -> torch.Tensor:
        return self.front.log_fn(x)

    def linear_mask(self, mask: torch.Tensor) -> torch.Tensor:
        fb = self.front.mel_fb.to(mask.dtype)
        total = fb.sum(dim=1)
        weights = fb / total.clamp_min(1e-12)[:, None]  # each linear bin: convex mix of mels
        # Bins no filter covers (DC, Nyquist, outside fmin..fmax) follow the nearest covered bin, so an
        # all-ones mask keeps the whole input instead of filtering those bins out.
        bins = torch.arange(fb.shape[0], device=fb.device)
        covered = bins[total > 0]
        nearest = covered[(bins[:, None] - covered[None, :]).abs().argmin(dim=1)]
        return mask @ weights[nearest].T


DOMAINS = {"stft": StftDomain, "mel": MelDomain}


class ClapBackend(nn.Module, ABC):
    """A frozen CLAP model behind the protocol lmaczs needs.

    Subclasses set ``sample_rate``, ``num_samples`` (the fixed window), ``pad_mode``, ``peak_normalize``,
    ``front`` (:class:`MelFrontEnd`) and ``spec`` (the string that reloads them), and implement
    :meth:`encode_features`, :meth:`embed_text` and :attr:`logit_scale`.
    """

    spec: str
    sample_rate: int
    num_samples: int
    pad_mode: PadMode = "zero"
    peak_normalize: bool = False
    front: MelFrontEnd

    def __init__(self) -> None:
        super().__init__()
        self.domain_name = "stft"

    def train(self, mode: bool = True) -> "ClapBackend":
        """A backend is frozen: it always stays in eval mode (BatchNorm statistics never move)."""
        return super().train(False)

    # -- masking domain ------------------------------------------------------------------------
    @property
    def domain(self) -> MaskingDomain:
        return DOMAINS[self.domain_name](self.front)

    def set_domain(self, name: str) -> "ClapBackend":
        if name not in DOMAINS:
            raise ValueError(f"unknown masking domain {name!r}; choose from {sorted(DOMAINS)}")
        self.domain_name = name
        return self

    def fit_window(self, wave: torch.Tensor) -> torch.Tensor:
        """Pad (zeros or repeats, per ``pad_mode``) or crop ``(..., N)`` to ``(..., num_samples)``."""
        n = wave.shape[-1]
        if n < self.num_samples and self.pad_mode == "repeat":
            reps = -(-self.num_samples // n)
            wave = wave.repeat(*([1] * (wave.dim() - 1)), reps)
        if wave.shape[-1] >= self.num_samples:
            return wave[..., : self.num_samples]
        return torch.nn.functional.pad(wave, (0, self.num_samples - wave.shape[-1]))

    def prepare(self, waves: torch.Tensor) -> torch.Tensor:
        """The backend's wave normalisation before analysis (peak 1 when ``peak_normalize``). ``(B, N)`` → same."""
        return peak_normalize(waves)[0] if self.peak_normalize else waves

    def analyze(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, num_samples)`` → ``(X (B, T, F), complex STFT (B, T, F_lin))`` in the current domain."""
        stft = self.front.stft.forward(wave)
        return self.domain.analyze(stft), stft

    def mask_shape(self) -> tuple[int, int]:
        """``(T, F)`` of the masking domain for one window."""
        t = self.front.stft.num_frames(self.num_samples)
        f = self.front.stft.n_freqs if self.domain_name == "stft" else self.front.n_mels
        return t, f

    def encode_spec(self, x: torch.Tensor) -> AudioEncoding:
        """``(B, T, F)`` masking-domain X → :class:`AudioEncoding` (InputTf then the audio tower)."""
        return self.encode_features(self.domain.input_transform(x))

    def hidden_shapes(self) -> list[tuple[int, int, int]]:
        """``(C, T_k, F_k)`` of the four hidden representations for one window."""
        with torch.no_grad():
            x = torch.zeros(1, *self.mask_shape(), device=self.logit_scale.device)
            return [tuple(h.shape[1:]) for h in self.encode_spec(x).hidden]  # type: ignore[misc]

    # -- the model -----------------------------------------------------------------------------
    @abstractmethod
    def encode_features(self, features: torch.Tensor) -> AudioEncoding:
        """``(B, T, n_mels)`` model input → :class:`AudioEncoding`."""

    @abstractmethod
    def embed_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """``P`` prompts → ``(P, D)`` L2-normalised text embeddings."""

    @property
    @abstractmethod
    def logit_scale(self) -> torch.Tensor:
        """Scalar multiplier of cosine similarities (already exponentiated)."""

    @property
    def embed_dim(self) -> int:
        return int(self.embed_text(["a"]).shape[-1])

    def frame_head(self) -> tuple[dict, dict[str, torch.Tensor]] | None:
        """The audio head applied frame by frame, for the decoder's frame prior (``--frame-prior``).

        A backend whose clip embedding is ``normalize(P(max_t mean_f hidden[-1]))`` for a
        :class:`~lmaczs.clap.projection.Projection` P returns ``(spec, state)``: P's constructor arguments
        (``d_in``, ``d_out``, ``hidden``) and a copy of its state dict. Then ``normalize(P(mean_f hidden[-1][..., t, :]))``
        is the embedding of frame t on the clip's own scale, and its similarity to a prompt says where in time the
        CLAP finds that prompt. ``None`` (the default): the backend pools otherwise and has no frame head.
        """
        return None

    def randomizable_blocks(self) -> list[nn.Module]:
        """The audio encoder's blocks, shallow → deep, for cascading model randomisation (sanity checks).

        Re-initialising the last block, then the last two, ... (top down) must change what the audio tower
        computes. Backends that support the check override this; the default refuses clearly.
        """
        from ..errors import BackendError

        raise BackendError(f"{type(self).__name__} does not list its audio blocks for cascading randomisation "
                           "(implement ClapBackend.randomizable_blocks)")

    def describe(self) -> dict:
        """JSON-able facts about this backend (stored with checkpoints and explanations)."""
        return {"spec": self.spec, "sample_rate": self.sample_rate, "num_samples": self.num_samples,
                "domain": self.domain_name, "mask_shape": list(self.mask_shape())}


def freeze(module: nn.Module) -> nn.Module:
    """Put a module in eval mode with no trainable parameters."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module
