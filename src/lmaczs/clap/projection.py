"""The projection head of the embedded CLAP (audio and text towers), shared with the decoder's frame prior."""

from __future__ import annotations

import torch
from torch import nn


class Projection(nn.Module):
    """Fixed standardisation, then a linear map plus (optionally) a residual two-layer MLP branch.

    ``(..., d_in)`` → ``(..., d_out)`` (not normalised). ``mean``/``std`` are buffers set from training data.
    """

    def __init__(self, d_in: int, d_out: int, hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        self.register_buffer("mean", torch.zeros(d_in))
        self.register_buffer("std", torch.ones(d_in))
        self.linear = nn.Linear(d_in, d_out)
        self.mlp = (nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out))
                    if hidden > 0 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        y = self.linear(x)
        return y + self.mlp(x) if self.mlp is not None else y
