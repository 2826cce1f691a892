"""``hf:<dir or hub id>``: a ``transformers.ClapModel`` (LAION CLAP, HTSAT audio tower) behind the protocol.

What differs from running the model through ``ClapProcessor``/``ClapFeatureExtractor``, and why:

- **Front end in torch.** The extractor's log-mel is NumPy; here it is rebuilt from the checkpoint's own
  feature-extractor settings (:func:`extractor_settings`) with a centred, *reflect*-padded, periodic-Hann
  :class:`~lmaczs.audio.Stft` (its FFT in float64, see :class:`Float64Stft`),
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

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

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
EXTRACTOR_FILE = "preprocessor_config.json"  # flat: ClapFeatureExtractor.save_pretrained, ClapProcessor in 4.x
PROCESSOR_FILE = "processor_config.json"  # ClapProcessor.save_pretrained in 5.x: the extractor's settings nested
NESTED_KEYS = ("feature_extractor", "audio_processor")  # the keys transformers looks for, in its order


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


def _read_json(path: Path, spec: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BackendError(f"{spec}: cannot read {path.name}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BackendError(f"{spec}: {path.name} is not valid JSON ({exc.msg}, line {exc.lineno})") from None


def extractor_settings(root: Path, spec: str) -> tuple[dict[str, Any], str]:
    """The checkpoint's ``ClapFeatureExtractor`` settings and where they were found, in every layout that
    ``ClapFeatureExtractor.from_pretrained`` reads, with its priority:

    1. ``processor_config.json`` with the settings nested under ``"feature_extractor"`` (or ``"audio_processor"``),
       as ``ClapProcessor.save_pretrained`` writes them in transformers 5.x;
    2. else a flat ``preprocessor_config.json`` (transformers 4.x, and ``ClapFeatureExtractor.save_pretrained``).

    Read here rather than by transformers so that a 5.x checkpoint also loads with transformers 4.x.

    Raises:
        BackendError: neither is there, a file is not valid JSON, or the settings are not a CLAP extractor's.
    """
    found: Any = None
    where = ""
    proc = root / PROCESSOR_FILE
    if proc.is_file():
        outer = _read_json(proc, spec)
        key = next((k for k in NESTED_KEYS if isinstance(outer, dict) and k in outer), None)
        if key is not None:  # a processor_config.json without nested settings (4.x) is skipped, as transformers does
            found, where = outer[key], f"{PROCESSOR_FILE} ({key!r})"
    pre = root / EXTRACTOR_FILE
    if found is None and pre.is_file():
        found, where = _read_json(pre, spec), EXTRACTOR_FILE
    if found is None:
        raise BackendError(f"{spec}: no feature-extractor settings in {root}: neither {EXTRACTOR_FILE} nor a "
                           f"{PROCESSOR_FILE} with a nested \"feature_extractor\" (save the processor with it)")
    if not isinstance(found, dict):
        raise BackendError(f"{spec}: {where} holds {type(found).__name__}, not the feature extractor's settings")
    kind = found.get("feature_extractor_type", "ClapFeatureExtractor")
    if kind != "ClapFeatureExtractor":
        raise BackendError(f"{spec}: {where} is for a {kind}, not a ClapFeatureExtractor (not a CLAP checkpoint?)")
    return found, where


class HfClap(ClapBackend):
    """A frozen ``transformers.ClapModel`` (HTSAT + RoBERTa) with a torch front end and unfolded hidden states.

    Build it with :meth:`from_pretrained`. For the released LAION models: 48 kHz, ``num_samples`` = 480 000,
    model input ``(B, 1001, 64)`` dB log-mel; hidden shapes ``(96, 256, 16)``, ``(192, 128, 8)``,
    ``(384, 64, 4)``, ``(768, 32, 2)`` (stage outputs before patch merging, the last after the final LayerNorm).
    """

    peak_normalize = False

    def __init__(self, model: "ClapModel", extractor: "ClapFeatureExtractor", tokenizer: "PreTrainedTokenizerBase",
                 spec: str, extractor_source: str = EXTRACTOR_FILE):
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
        if self.padding not in ("repeatpad", "repeat", "pad") or str(extractor.truncation) not in ("fusion",
                                                                                                  "rand_trunc"):
            raise BackendError(f"{spec}: {extractor_source}: unknown padding {extractor.padding!r} or truncation "
                               f"{extractor.truncation!r} (ClapFeatureExtractor knows repeatpad|repeat|pad and "
                               "fusion|rand_trunc)")
        bad = [name for name in ("sampling_rate", "nb_max_samples", "hop_length", "fft_window_size", "feature_size")
               if int(getattr(extractor, name)) <= 0]
        if bad:
            raise BackendError(f"{spec}: {extractor_source}: {', '.join(bad)} must be positive")
        n_mels = int(extractor.feature_size)
        if n_mels != int(audio_cfg.num_mel_bins):
            raise BackendError(f"{spec}: {extractor_source} has {n_mels} mel bins but the model expects "
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
        """Load a checkpoint directory (``config.json``, weights, the feature extractor's settings, tokenizer files)
        or a hub id already in the Hugging Face cache (``cache_dir`` overrides the default cache). Never downloads.

        The extractor's settings may be a ``preprocessor_config.json`` (transformers 4.x) or nested in a
        ``processor_config.json`` (``ClapProcessor.save_pretrained`` in 5.x): see :func:`extractor_settings`.

        Raises:
            BackendError: no such directory/cached model, a file missing or corrupt, or not a CLAP checkpoint.
        """
        from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel
        root = _resolve_dir(str(name_or_dir), cache_dir)
        spec = f"hf:{root if Path(str(name_or_dir)).expanduser().is_dir() else name_or_dir}"
        if not (root / "config.json").is_file():
            raise BackendError(f"{spec}: config.json is missing from {root}")
        settings, where = extractor_settings(root, spec)
        with quiet_transformers_load(f"{spec}: cannot load a CLAP checkpoint from {root}"):
            model = ClapModel.from_pretrained(str(root), local_files_only=True)
        with quiet_transformers_load(f"{spec}: bad feature-extractor settings in {where}"):
            extractor = ClapFeatureExtractor.from_dict(dict(settings))
        with quiet_transformers_load(f"{spec}: cannot load the tokenizer from {root}"):
            tokenizer = AutoTokenizer.from_pretrained(str(root), local_files_only=True)
        try:
            return cls(model.float(), extractor, tokenizer, spec, extractor_source=where)
        except (TypeError, ValueError, ZeroDivisionError) as exc:  # e.g. a setting of the wrong type
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendError(f"{spec}: unusable settings (feature extractor from {where}): {msg}") from None

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


__all__ = ["Float64Stft", "HfClap", "extractor_settings", "unfold_htsat", "power_to_db"]
