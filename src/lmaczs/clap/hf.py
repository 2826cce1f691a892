"""``hf:<dir or hub id>``: a ``transformers.ClapModel`` (LAION CLAP, HTSAT audio tower) behind the protocol.

What differs from running the model through ``ClapProcessor``/``ClapFeatureExtractor``, and why:

- **Front end in torch.** The extractor's log-mel is NumPy; here it is rebuilt from the checkpoint's own
  ``preprocessor_config.json`` with a centred, *reflect*-padded, periodic-Hann :class:`~lmaczs.audio.Stft` (its FFT
  in float64, see :class:`Float64Stft`),
  :func:`~lmaczs.audio.mel_filterbank` (Slaney scale and norm for ``rand_trunc`` models; HTK, unnormalised for
  ``fusion`` models, as the extractor does) and ``10·log10(max(mel, 1e-10))``, so it is differentiable and matches
  the extractor to ~1e-5 dB (see ``tests/test_hf_backend.py``).
- **Deterministic windows.** A clip shorter than the extractor's window (10 s for LAION) is padded exactly as
  the extractor's ``padding`` says (``repeatpad``: whole repeats, then zeros); a longer one is cropped from its
  start — never at random. Longer audio is meant to be explained window by window.
- **Fused models** (``enable_fusion=True``) get the window's mel in all four fusion channels with
  ``is_longer=False``: for a clip that fits the window that is what the extractor computes, except that when
  *no* clip in a batch is longer the extractor marks a random one as longer; we never do.
- **Hidden states.** HTSAT folds the (time × mel) input into a square image: time is cut into ``freq_ratio =
  spec_size // n_mels`` chunks stacked along the image's height. :func:`unfold_htsat` undoes that, so each of the
  four Swin stage outputs is returned as ``(B, C, T_k, F_k)`` with time in order (``T_k = freq_ratio · W_k``).

Zero-shot logits use the model's *audio* scale, ``exp(logit_scale_a)``, as ``ClapModel.logits_per_audio`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..audio import Stft, mel_filterbank
from ..errors import BackendError, PromptError
from .base import AudioEncoding, ClapBackend, MelFrontEnd, freeze
from .hf_loading import quiet_transformers_load

if TYPE_CHECKING:
    from transformers import ClapFeatureExtractor, ClapModel, PreTrainedTokenizerBase

DB_FLOOR = 1e-10  # the extractor's mel floor and dB ``min_value`` (−100 dB)


def power_to_db(mel: torch.Tensor) -> torch.Tensor:
    """The extractor's dB scaling (reference 1, no top_db): ``10·log10(max(x, 1e-10))``, any shape."""
    return 10.0 * torch.log10(mel.clamp_min(DB_FLOOR))


class Float64Stft(Stft):
    """:class:`~lmaczs.audio.Stft` whose FFT runs in float64 and returns the input's precision.

    A float32 FFT has an absolute error of ~1e-7 of a frame's energy, so bins 80 dB below the frame's peak
    (common in real recordings) come out ~0.02 dB off the extractor's float64 NumPy STFT; a float64 FFT is cheap
    next to HTSAT and keeps the log-mel within ~1e-5 dB. Differentiable (the casts pass gradients).
    """

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` real → ``(B, T, F)`` complex (complex64 for float32 input)."""
        out_dtype = torch.complex128 if wave.dtype == torch.float64 else torch.complex64
        return super().forward(wave.to(torch.float64)).to(out_dtype)


def unfold_htsat(image: torch.Tensor, freq_ratio: int) -> torch.Tensor:
    """Undo HTSAT's time folding: ``(B, C, H, W)`` image-layout map → ``(B, C, T, F)`` with time in order.

    ``ClapAudioEncoder.reshape_mel2img`` cuts the (time, mel) input into ``freq_ratio`` consecutive time chunks
    and stacks them along the image's height (row ``h = chunk · F + f``, column ``w`` = time inside the chunk).
    Patch embedding and patch merging pool non-overlapping squares, so every stage keeps that layout at its own
    resolution; here ``T = freq_ratio · W`` (time index ``chunk · W + w``) and ``F = H / freq_ratio``.
    """
    b, c, h, w = image.shape
    if h % freq_ratio:
        raise ValueError(f"image height {h} is not a multiple of freq_ratio {freq_ratio}")
    f = h // freq_ratio
    return image.reshape(b, c, freq_ratio, f, w).permute(0, 1, 2, 4, 3).reshape(b, c, freq_ratio * w, f)


def _resolve_dir(name_or_dir: str, cache_dir: str | Path | None) -> Path:
    """A local checkpoint directory, or the cached snapshot of a hub id (offline: never downloads)."""
    if not name_or_dir:
        raise BackendError("the hf backend needs a checkpoint: hf:<local dir> or hf:<hub id already in the cache>")
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise BackendError(f"hf:{name_or_dir}: is a file; give the checkpoint directory (with config.json)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name_or_dir), cache_dir=cache_dir, local_files_only=True))
    except Exception:
        raise BackendError(f"hf:{name_or_dir}: no such directory, and no such model in the local Hugging Face "
                           "cache (lmaczs never downloads); download it once or pass a local directory") from None


class HfClap(ClapBackend):
    """A frozen ``transformers.ClapModel`` (HTSAT + RoBERTa) with a torch front end and unfolded hidden states.

    Build it with :meth:`from_pretrained`. For the released LAION models: 48 kHz, ``num_samples`` = 480 000,
    model input ``(B, 1001, 64)`` dB log-mel; hidden shapes ``(96, 256, 16)``, ``(192, 128, 8)``,
    ``(384, 64, 4)``, ``(768, 32, 2)`` (stage outputs before patch merging, the last after the final LayerNorm).
    """

    peak_normalize = False

    def __init__(self, model: "ClapModel", extractor: "ClapFeatureExtractor", tokenizer: "PreTrainedTokenizerBase",
                 spec: str):
        super().__init__()
        audio_cfg = model.config.audio_config
        self.spec = spec
        self.model = model
        self.tokenizer = tokenizer
        self.sample_rate = int(extractor.sampling_rate)
        self.num_samples = int(extractor.nb_max_samples)
        self.padding = str(extractor.padding)  # "repeatpad" | "repeat" | "pad": the extractor's short-clip rule
        self.pad_mode = "repeat" if self.padding in ("repeat", "repeatpad") else "zero"
        self.fused = bool(audio_cfg.enable_fusion)
        n_mels = int(extractor.feature_size)
        if n_mels != int(audio_cfg.num_mel_bins):
            raise BackendError(f"{spec}: preprocessor_config.json has {n_mels} mel bins but the model expects "
                               f"{audio_cfg.num_mel_bins}")
        self.freq_ratio = int(audio_cfg.spec_size) // n_mels
        frames = self.num_samples // int(extractor.hop_length) + 1
        if self.freq_ratio < 1 or frames > int(audio_cfg.spec_size) * self.freq_ratio:
            raise BackendError(f"{spec}: a {self.num_samples}-sample window gives {frames} frames, more than "
                               f"HTSAT's spec_size {audio_cfg.spec_size} input holds")
        # the extractor uses the HTK bank for "fusion" and the Slaney one otherwise (see its _get_input_mel)
        htk = str(extractor.truncation) == "fusion"
        n_fft = int(extractor.fft_window_size)
        fb = mel_filterbank(self.sample_rate, n_fft, n_mels, float(extractor.frequency_min),
                            float(extractor.frequency_max), htk=htk, norm=None if htk else "slaney")
        self.front = MelFrontEnd(Float64Stft(n_fft=n_fft, hop_length=int(extractor.hop_length), pad_mode="reflect"),
                                 fb, power_to_db)
        max_tokens = int(model.config.text_config.max_position_embeddings) - 2  # RoBERTa positions start at pad+1
        self.max_text_tokens = min(int(getattr(tokenizer, "model_max_length", max_tokens)), max_tokens)
        freeze(self)

    @classmethod
    def from_pretrained(cls, name_or_dir: str, *, cache_dir: str | Path | None = None) -> "HfClap":
        """Load a checkpoint directory (``config.json``, weights, ``preprocessor_config.json``, tokenizer files) or
        a hub id already in the Hugging Face cache (``cache_dir`` overrides the default cache). Never downloads.

        Raises:
            BackendError: no such directory/cached model, a file missing, or not a CLAP checkpoint.
        """
        from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel
        root = _resolve_dir(str(name_or_dir), cache_dir)
        spec = f"hf:{root if Path(str(name_or_dir)).expanduser().is_dir() else name_or_dir}"
        for needed in ("config.json", "preprocessor_config.json"):
            if not (root / needed).is_file():
                raise BackendError(f"{spec}: {needed} is missing from {root}")
        with quiet_transformers_load(f"{spec}: cannot load a CLAP checkpoint from {root}"):
            model = ClapModel.from_pretrained(str(root), local_files_only=True)
            extractor = ClapFeatureExtractor.from_pretrained(str(root), local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(str(root), local_files_only=True)
        return cls(model.float(), extractor, tokenizer, spec)

    # -- windows -------------------------------------------------------------------------------
    def fit_window(self, wave: torch.Tensor) -> torch.Tensor:
        """Pad or crop ``(..., N)`` to ``(..., num_samples)`` by the extractor's rule (never a random crop).

        ``repeatpad`` (LAION): ``num_samples // N`` whole repeats, then zeros; ``repeat``: repeats cut to length;
        ``pad``: zeros. Longer clips keep their first ``num_samples``.
        """
        n = wave.shape[-1]
        if 0 < n < self.num_samples and self.padding in ("repeat", "repeatpad"):
            reps = self.num_samples // n if self.padding == "repeatpad" else -(-self.num_samples // n)
            wave = wave.repeat(*([1] * (wave.dim() - 1)), reps)
        if wave.shape[-1] >= self.num_samples:
            return wave[..., : self.num_samples]
        return F.pad(wave, (0, self.num_samples - wave.shape[-1]))

    # -- the model -----------------------------------------------------------------------------
    def encode_features(self, features: torch.Tensor) -> AudioEncoding:
        """``(B, T, n_mels)`` dB log-mel → embedding ``(B, D)`` and four unfolded Swin stage maps."""
        encoder = self.model.audio_model.audio_encoder
        dtype = self.model.logit_scale_a.dtype
        x = features.to(dtype).unsqueeze(1)  # (B, 1, T, n_mels)
        is_longer = None
        if self.fused:
            x = x.expand(-1, 4, -1, -1)  # global + three local channels, all the same window
            is_longer = torch.zeros(x.shape[0], 1, dtype=torch.bool, device=x.device)
        out = encoder(x, is_longer=is_longer, output_hidden_states=True,
                      output_hidden_states_before_downsampling=True, return_dict=True)
        stages = list(out.hidden_states)[-4:]  # (B, C, H, W) each; the first entry is the patch embedding
        # deepest: after the encoder's final LayerNorm (what the embedding pools); HF already unfolded it as
        # (B, C, F, T), and unfold_htsat(norm(stage)) equals it (tested)
        hidden = [unfold_htsat(h, self.freq_ratio) for h in stages[:-1]]
        last = out.last_hidden_state.transpose(-1, -2)
        hidden.append(last)
        # HF's pooler is the mean of last_hidden_state; pool the tensor we return so CAM gradients reach it
        emb = F.normalize(self.model.audio_projection(last.flatten(2).mean(-1)), dim=-1)
        return AudioEncoding(emb, hidden)

    def tokenize(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """``P`` prompts → ``input_ids`` / ``attention_mask`` ``(P, L)`` on the model's device."""
        prompts = list(prompts)
        if not prompts:
            raise PromptError("no prompts given")
        batch = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.max_text_tokens,
                               return_tensors="pt")
        device = self.model.logit_scale_a.device
        return {k: batch[k].to(device) for k in ("input_ids", "attention_mask")}

    def embed_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """``P`` prompts → ``(P, D)`` L2-normalised (RoBERTa pooler → text projection, as ``ClapModel``)."""
        tokens = self.tokenize(prompts)
        pooled = self.model.text_model(**tokens, return_dict=True).pooler_output
        return F.normalize(self.model.text_projection(pooled), dim=-1)

    @property
    def logit_scale(self) -> torch.Tensor:
        """``exp(logit_scale_a)``: the scale of ``ClapModel.logits_per_audio``."""
        return self.model.logit_scale_a.exp()

    def randomizable_blocks(self) -> list[nn.Module]:
        """The HTSAT Swin stages, shallow → deep."""
        return list(self.model.audio_model.audio_encoder.layers)


__all__ = ["Float64Stft", "HfClap", "unfold_htsat", "power_to_db"]
