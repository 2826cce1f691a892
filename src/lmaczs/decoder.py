"""The LMAC-ZS mask decoder M_θ(t, h): text-conditioned transposed-convolution upsampling to a T×F mask.

Architecture (sizes follow the backend, probed once with :meth:`ClapBackend.hidden_shapes`)::

    h4 (deepest) ─1×1─► x ─[cross-attn(t)]─► ConvT ↑ ─(+ 1×1 h3)─ conv ─[cross-attn(t)]─► ConvT ↑ ─(+ 1×1 h2) ...
        ... ─(+ 1×1 h1)─ conv ─► ConvT ↑ until T ≥ T_mask ─► resize to (T_mask, F_grid) ─► Linear F_grid→F_mask
        ─► sigmoid                                                          (B, T_mask, F_mask) in [0, 1]

Text conditioning is Stable-Diffusion-style cross-attention: spatial positions are queries, and the prompt
embedding t is expanded into ``n_context`` learned context tokens (keys/values), so attention is not trivially 1.
Every level also gets a FiLM scale/shift from t: with cross-attention alone (zero-initialised output, as in Stable
Diffusion) the masks of all prompts start identical and L_ZS's gradients are symmetric between them, so the
decoder stayed prompt-blind for hundreds of steps on the embedded model.
The last layer maps the decoder's frequency grid onto the masking domain's bins (e.g. 96 → 1025 linear bins); it
starts as linear interpolation and is learned.

Frame prior (``frame_head`` in the config, ``lmac-zs train --frame-prior``): a frozen copy of the CLAP's own audio
head, applied to each frame of the deepest hidden map (mean over frequency), gives the cosine between every frame and
the prompt — where in time the CLAP itself finds the prompt (:meth:`ClapBackend.frame_head`). It enters the deepest
features and, through a learned gain and offset, the mask logits. Without it the decoder must discover from L_ZS
alone which frames carry a prompt's evidence, which ~100 steps on a CPU do not teach it (docs/model-card.md); the
map is still a function of (t, h) only, so the decoder remains M_θ(t, h).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .clap.projection import Projection
from .errors import ConfigError

PRIOR_GAIN, PRIOR_OFFSET = 12.0, 0.25  # initial gain and offset of the frame prior's logit


@dataclass
class DecoderConfig:
    """Everything needed to rebuild a :class:`MaskDecoder` (stored as JSON next to its weights)."""

    hidden_shapes: list[tuple[int, int, int]]  # (C, T_k, F_k) shallow → deep
    mask_shape: tuple[int, int]  # (T, F) of the masking domain
    text_dim: int
    widths: list[int] = field(default_factory=lambda: [32, 64, 96, 128])  # per level, shallow → deep
    attn_levels: int = 3  # cross-attention at this many of the deepest levels (≥ 2)
    n_context: int = 4
    context_dim: int = 64
    heads: int = 4
    max_freq_grid: int = 128
    frame_head: dict | None = None  # Projection(d_in, d_out, hidden) of the frame prior (module docstring); None: off

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DecoderConfig":
        d = dict(d)
        d["hidden_shapes"] = [tuple(s) for s in d["hidden_shapes"]]
        d["mask_shape"] = tuple(d["mask_shape"])
        return cls(**d)


class CrossAttention(nn.Module):
    """GroupNorm → 1×1 in → LN + cross-attention to text tokens → LN + GELU MLP → 1×1 out, residual."""

    def __init__(self, channels: int, context_dim: int, heads: int):
        super().__init__()
        heads = max(1, min(heads, channels // 8))
        self.norm = nn.GroupNorm(min(8, channels), channels)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.ln1 = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, kdim=context_dim, vdim=context_dim, batch_first=True)
        self.ln2 = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, 2 * channels), nn.GELU(), nn.Linear(2 * channels, channels))
        self.proj_out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``x (B, C, T, F)``, ``context (B, K, context_dim)`` → ``(B, C, T, F)``."""
        b, c, t, f = x.shape
        h = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)  # (B, T·F, C)
        q = self.ln1(h)
        h = h + self.attn(q, context, context, need_weights=False)[0]
        h = h + self.mlp(self.ln2(h))
        return x + self.proj_out(h.transpose(1, 2).reshape(b, c, t, f))


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    # no conv bias: the GroupNorm right after it would cancel it (and Adam would step it on float noise)
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.GroupNorm(min(8, c_out), c_out),
                         nn.SiLU())


def _up(c_in: int, c_out: int, stride: tuple[int, int]) -> nn.Module:
    kernel = tuple(2 * s if s > 1 else 3 for s in stride)
    padding = tuple(s // 2 if s > 1 else 1 for s in stride)
    return nn.ConvTranspose2d(c_in, c_out, kernel, stride=stride, padding=padding)


def _ratio(dst: int, src: int) -> int:
    return max(1, round(dst / src))


def interpolation_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """``(n_out, n_in)`` weights of linear interpolation (align_corners=True) from n_in to n_out points."""
    pos = torch.linspace(0, n_in - 1, n_out)
    lo = pos.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    w_hi = pos - lo.float()
    m = torch.zeros(n_out, n_in)
    m[torch.arange(n_out), lo] += 1 - w_hi
    m[torch.arange(n_out), hi] += w_hi
    return m


class MaskDecoder(nn.Module):
    """``M_θ(t, h)``: text embedding ``(B, D)`` + four hidden maps → mask ``(B, T, F)`` in [0, 1]."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        if len(config.hidden_shapes) != 4:
            raise ValueError(f"the decoder needs 4 hidden representations, got {len(config.hidden_shapes)}")
        self.config = config
        shapes = list(reversed(config.hidden_shapes))  # deep → shallow
        widths = list(reversed(config.widths))
        self.context = nn.Sequential(nn.Linear(config.text_dim, config.n_context * config.context_dim),
                                     nn.LayerNorm(config.n_context * config.context_dim))
        self.lateral = nn.ModuleList(nn.Conv2d(s[0], w, 1) for s, w in zip(shapes, widths))
        self.ups = nn.ModuleList()
        self.fuse = nn.ModuleList()
        self.attn = nn.ModuleDict()
        # FiLM (per-channel scale and shift from t) at every level: a direct multiplicative text path, so the
        # masks of different prompts differ from the first step (cross-attention starts as the identity)
        self.film = nn.ModuleList(nn.Linear(config.text_dim, 2 * w) for w in widths)
        # Text-audio agreement map: the deepest hidden map projected into the text space, cosine with t at every
        # position. It enters the deepest features and, upsampled, biases the mask logits, so a prompt that
        # matches nothing in the clip can switch the whole mask off (the paper's "unrelated prompt → empty mask").
        self.match = nn.Conv2d(shapes[0][0], config.text_dim, 1)
        self.match_in = nn.Conv2d(1, widths[0], 1)
        self.match_gain = nn.Parameter(torch.tensor(4.0))
        self.match_bias = nn.Parameter(torch.tensor(0.0))
        self.frame_head = None
        if config.frame_head is not None:
            self.frame_head = Projection(**config.frame_head).requires_grad_(False)  # the CLAP's, loaded by
            # build_decoder and never trained
            self.prior_in = nn.Conv2d(1, widths[0], 1)
            # frames of the prompted sound score ≈ 0.35 and the rest ≈ 0.05 on the embedded model: a mask ≈ 0.8 vs 0.1
            self.prior_gain = nn.Parameter(torch.tensor(PRIOR_GAIN))
            self.prior_offset = nn.Parameter(torch.tensor(PRIOR_OFFSET))
        for k, (shape, w) in enumerate(zip(shapes, widths)):
            if k > 0:
                prev = shapes[k - 1]
                self.ups.append(_up(widths[k - 1], w, (_ratio(shape[1], prev[1]), _ratio(shape[2], prev[2]))))
            self.fuse.append(_conv_block(w, w))
            if k < config.attn_levels:
                self.attn[str(k)] = CrossAttention(w, config.context_dim, config.heads)
        # Upsample past the shallowest level until time reaches the mask's resolution.
        t_mask, f_mask = config.mask_shape
        t, f, c = shapes[-1][1], shapes[-1][2], widths[-1]
        self.head = nn.ModuleList()
        while t * 1.5 < t_mask:
            sf = 2 if f * 2 <= min(config.max_freq_grid, f_mask) else 1
            c_out = max(16, c // 2)
            self.head.append(nn.Sequential(_up(c, c_out, (2, sf)), nn.GroupNorm(min(8, c_out), c_out), nn.SiLU()))
            t, f, c = t * 2, f * sf, c_out
        self.f_grid = min(f, f_mask)
        self.to_mask = nn.Conv2d(c, 1, 3, padding=1)
        self.freq_map = nn.Linear(self.f_grid, f_mask)
        with torch.no_grad():
            self.freq_map.weight.copy_(interpolation_matrix(self.f_grid, f_mask))
            self.freq_map.bias.zero_()

    def forward(self, text: torch.Tensor, hidden: list[torch.Tensor]) -> torch.Tensor:
        """Args: ``text (B, D)``, ``hidden`` 4 × ``(B, C_k, T_k, F_k)`` shallow → deep. Returns ``(B, T, F)``."""
        b = text.shape[0]
        context = self.context(text).view(b, self.config.n_context, self.config.context_dim)
        feats = list(reversed(hidden))
        agree = torch.einsum("bdtf,bd->btf", F.normalize(self.match(feats[0]), dim=1),
                             F.normalize(text, dim=-1))[:, None]  # (B, 1, T_4, F_4) cosine in [-1, 1]
        prior = self.frame_prior(text, feats[0])
        x = None
        for k, h in enumerate(feats):
            lat = self.lateral[k](h)
            if x is None:
                x = lat + self.match_in(agree)
                if prior is not None:
                    x = x + self.prior_in(prior)
            else:
                x = self.ups[k - 1](x)
                if x.shape[-2:] != lat.shape[-2:]:
                    x = F.interpolate(x, size=lat.shape[-2:], mode="bilinear", align_corners=False)
                x = x + lat
            x = self.fuse[k](x)
            gamma, beta = self.film[k](text).chunk(2, dim=-1)
            x = x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
            if str(k) in self.attn:
                x = self.attn[str(k)](x, context)
        for layer in self.head:
            x = layer(x)
        t_mask, _ = self.config.mask_shape
        x = F.interpolate(x, size=(t_mask, self.f_grid), mode="bilinear", align_corners=False)
        gate = F.interpolate(agree, size=(t_mask, self.f_grid), mode="bilinear", align_corners=False)
        gate = self.match_gain * gate + self.match_bias
        if prior is not None:
            prior = F.interpolate(prior, size=(t_mask, self.f_grid), mode="bilinear", align_corners=False)
            gate = gate + self.prior_gain * (prior - self.prior_offset)
        logits = self.freq_map((self.to_mask(x) + gate).squeeze(1))
        return torch.sigmoid(logits)

    def frame_prior(self, text: torch.Tensor, deepest: torch.Tensor) -> torch.Tensor | None:
        """Cosine of each frame's embedding (the frozen frame head on ``deepest (B, C, T_4, F_4)`` averaged over
        frequency) with ``text (B, D)``, spread over frequency: ``(B, 1, T_4, F_4)``; None without a frame head."""
        if self.frame_head is None:
            return None
        frames = F.normalize(self.frame_head(deepest.mean(dim=3).transpose(1, 2)), dim=-1)  # (B, T_4, D)
        cos = torch.einsum("btd,bd->bt", frames, F.normalize(text, dim=-1))
        return cos[:, None, :, None].expand(-1, -1, -1, deepest.shape[-1])


def build_decoder(backend, frame_prior: bool = False, **overrides) -> MaskDecoder:
    """A fresh decoder sized for a backend (its hidden shapes, mask shape and text dimension). ``frame_prior``:
    with a frozen copy of the backend's frame head (module docstring); a backend without one is refused."""
    head = backend.frame_head() if frame_prior else None
    if frame_prior and head is None:
        raise ConfigError(f"--frame-prior needs a CLAP whose embedding pools its last hidden map frame by frame "
                          f"(the embedded and tiny models); {backend.spec} has no frame head")
    cfg = DecoderConfig(hidden_shapes=backend.hidden_shapes(), mask_shape=backend.mask_shape(),
                        text_dim=backend.embed_dim, frame_head=None if head is None else head[0], **overrides)
    decoder = MaskDecoder(cfg)
    if head is not None:
        decoder.frame_head.load_state_dict(head[1])
    return decoder
