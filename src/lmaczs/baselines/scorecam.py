"""ScoreCAM (Wang et al. 2020): gradient-free; each activation map of the last block, used as a mask, is
weighted by the target prompt's probability on the masked input."""

from __future__ import annotations

import torch

from .base import SaliencyMethod, normalize_maps, similarity_logits, upsample


class ScoreCam(SaliencyMethod):
    """ScoreCAM on ``encode_spec(x).hidden[-1]``.

    Per example, the ``max_channels`` channels with the largest mean activation are kept (CNN14's last block
    has 2048 channels, i.e. 2048 forward passes per clip otherwise). Each kept channel A_k is upsampled
    bilinearly to ``(T, F)``, min–max normalised to a mask H_k ∈ [0, 1], and scored
    ``s_k = softmax(logits(H_k ⊙ X))[target]`` over all prompts; the map is ``ReLU(Σ_k s_k · up(A_k))``.
    The masked forwards run in chunks of ``batch_size``. Cost: 1 + min(C, max_channels) forwards per clip.
    """

    name = "scorecam"

    def __init__(self, max_channels: int = 64, batch_size: int = 64):
        self.max_channels = max_channels
        self.batch_size = batch_size

    @torch.no_grad()
    def attribute(self, backend, x, text_emb, target):
        b, t, f = x.shape
        hidden = backend.encode_spec(x).hidden[-1]  # (B, C, T_k, F_k)
        k = min(self.max_channels, hidden.shape[1])
        top = hidden.mean(dim=(2, 3)).topk(k, dim=1).indices  # (B, K)
        acts = hidden.gather(1, top[:, :, None, None].expand(-1, -1, *hidden.shape[2:]))  # (B, K, T_k, F_k)
        flat_acts = acts.reshape(b * k, 1, *acts.shape[2:])
        owner = torch.arange(b, device=x.device).repeat_interleave(k)  # example of each flat channel
        scores = torch.empty(b * k, device=x.device, dtype=x.dtype)
        for s in range(0, b * k, self.batch_size):
            idx = slice(s, s + self.batch_size)
            masks = normalize_maps(upsample(flat_acts[idx], (t, f)).squeeze(1))
            probs = similarity_logits(backend, masks * x[owner[idx]], text_emb).softmax(dim=-1)
            scores[idx] = probs.gather(1, target[owner[idx]].view(-1, 1)).squeeze(1)
        cam = (scores.view(b, k, 1, 1) * acts).sum(dim=1).relu()  # upsampling is linear: sum first
        return upsample(cam.unsqueeze(1), (t, f)).squeeze(1)
