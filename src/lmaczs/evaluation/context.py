"""What every part of an evaluation shares: the backend, the methods, the clips, the prompts, where to write.

:meth:`EvalContext.analyze` turns a batch of waves into each masking domain the methods need (the backend's own,
plus ``mel`` for a mel-domain decoder), and :meth:`EvalContext.explain` runs one method on its domain's view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

import torch

from ..clap import ClapBackend
from ..clap.base import AudioEncoding
from .conditions import Conditions
from .data import EvalData
from .methods import MaskMethod, in_domain
from .stats import StatsConfig


class View(NamedTuple):
    """A batch in one masking domain: ``x (B, T, F)``, complex ``stft (B, T, F_lin)`` and the encoding of x."""

    x: torch.Tensor
    stft: torch.Tensor
    enc: AudioEncoding


@dataclass
class EvalContext:
    backend: ClapBackend
    methods: dict[str, MaskMethod]
    data: EvalData
    cond: Conditions
    text: torch.Tensor  # (P, D) prompt embeddings on the device
    out: Path
    seed: int = 0
    batch_size: int = 8
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: bool = True
    stats: StatsConfig = field(default_factory=StatsConfig)

    @property
    def keys(self) -> list[str]:
        return list(self.methods)

    @property
    def primary(self) -> str:
        """The backend's own masking domain (that of the main decoder)."""
        return self.backend.domain_name

    def domain_of(self, key: str) -> str:
        return self.methods[key].domain or self.primary

    @property
    def domains(self) -> list[str]:
        return list(dict.fromkeys([self.primary] + [self.domain_of(k) for k in self.methods]))

    @torch.no_grad()
    def analyze(self, waves: torch.Tensor, domains: Sequence[str] | None = None) -> dict[str, View]:
        """``(B, num_samples)`` waves → ``{domain: View}`` after the backend's wave normalisation."""
        waves = self.backend.prepare(waves.to(self.device))
        out = {}
        for d in domains or self.domains:
            with in_domain(self.backend, d):
                x, stft = self.backend.analyze(waves)
                out[d] = View(x, stft, self.backend.encode_spec(x))
        return out

    def explain(self, key: str, views: dict[str, View], rows: Sequence[int], targets: torch.Tensor
                ) -> torch.Tensor:
        """Masks of method ``key`` for rows ``rows`` of a batch, explaining prompt ``targets (len(rows),)``.
        Returns ``(len(rows), T, F)`` in the method's domain."""
        view = views[self.domain_of(key)]
        sel = torch.as_tensor(list(rows), device=view.x.device, dtype=torch.long)
        with in_domain(self.backend, self.domain_of(key)):
            return self.methods[key](self.backend, view.x[sel], self.text, targets.to(view.x.device),
                                     hidden=[h[sel] for h in view.enc.hidden])

    def progress_bar(self, total: int, desc: str, unit: str = "expl"):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, disable=not self.progress)
