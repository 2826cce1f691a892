"""PANNs CNN14, the audio tower of MS-CLAP 2022, with state-dict names equal to msclap's ``audio_encoder.base``.

The network starts at the log-mel spectrogram: the STFT and mel filterbank run in the backend's own torch front
end (:class:`lmaczs.clap.base.MelFrontEnd`), so masks can be applied before the log. The checkpoint's torchlibrosa
tensors (conv-STFT kernels and ``melW``) are kept as inert buffers only so that strict loading accepts them; the
backend compares them against its front end when it loads a checkpoint.

Shapes for one 5 s window at 44.1 kHz (690 frames × 64 mel bins)::

    features (B, 690, 64) ─bn0 (over mel bins)─► (B, 1, 690, 64)
      conv_block1 (64,  345, 32)   conv_block2 (128, 172, 16)   conv_block3 (256, 86, 8)
      conv_block4 (512, 43, 4)     conv_block5 (1024, 21, 2)    conv_block6 (2048, 21, 2)   [no pooling]
      mean over frequency → (B, 2048, 21); max_t + mean_t → (B, 2048); ReLU(fc1) → (B, 2048) embedding

The four hidden representations are the outputs of conv_block3..6 (shallow → deep), laid out time × frequency.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = (64, 128, 256, 512, 1024, 2048)  # output channels of conv_block1..6


class TensorSlot(nn.Module):
    """Holds one checkpoint tensor under the name ``weight`` that the model does not compute with."""

    def __init__(self, *shape: int):
        super().__init__()
        self.register_buffer("weight", torch.zeros(*shape))


class _StftSlots(nn.Module):
    """``stft.conv_real.weight`` / ``stft.conv_imag.weight``: torchlibrosa's windowed DFT kernels
    ``(n_fft//2+1, 1, n_fft)``."""

    def __init__(self, n_fft: int):
        super().__init__()
        self.conv_real = TensorSlot(n_fft // 2 + 1, 1, n_fft)
        self.conv_imag = TensorSlot(n_fft // 2 + 1, 1, n_fft)


class _SpectrogramSlots(nn.Module):
    def __init__(self, n_fft: int):
        super().__init__()
        self.stft = _StftSlots(n_fft)


class _LogmelSlots(nn.Module):
    """``melW``: torchlibrosa's ``(n_fft//2+1, n_mels)`` mel filterbank."""

    def __init__(self, n_fft: int, n_mels: int):
        super().__init__()
        self.register_buffer("melW", torch.zeros(n_fft // 2 + 1, n_mels))


class ConvBlock(nn.Module):
    """Two (3×3 conv, no bias → BatchNorm → ReLU) layers, then average pooling."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
        """``(B, C_in, T, F)`` → ``(B, C_out, T // pool[0], F // pool[1])``."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, pool) if pool != (1, 1) else x


class Cnn14(nn.Module):
    """CNN14 from the log-mel onward (eval semantics: msclap's dropouts are inactive).

    Args:
        n_mels: mel bins (``bn0`` normalises over them).
        n_fft: STFT size, only for the shapes of the inert torchlibrosa tensors.
        widths: output channels of conv_block1..6.
        out_emb: size of ``fc1`` (the pre-projection embedding).
        num_classes: size of the unused AudioSet head ``fc_audioset``.
    """

    def __init__(self, n_mels: int = 64, n_fft: int = 1024, widths: Sequence[int] = WIDTHS,
                 out_emb: int = 2048, num_classes: int = 527):
        super().__init__()
        if len(widths) != 6:
            raise ValueError(f"CNN14 has 6 conv blocks, got {len(widths)} widths")
        self.spectrogram_extractor = _SpectrogramSlots(n_fft)
        self.logmel_extractor = _LogmelSlots(n_fft, n_mels)
        self.bn0 = nn.BatchNorm2d(n_mels)
        chans = [1, *widths]
        for k in range(6):
            setattr(self, f"conv_block{k + 1}", ConvBlock(chans[k], chans[k + 1]))
        self.fc1 = nn.Linear(widths[-1], out_emb)
        self.fc_audioset = nn.Linear(out_emb, num_classes)  # AudioSet tagging head: loaded, never used

    def blocks(self) -> list[ConvBlock]:
        return [getattr(self, f"conv_block{k + 1}") for k in range(6)]

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(B, T, n_mels)`` log-mel → ``(embedding (B, out_emb), [h3, h4, h5, h6] each (B, C, T_k, F_k))``."""
        # bn0 normalises each mel bin: move mel bins to the channel axis and back
        x = self.bn0(features.unsqueeze(1).transpose(1, 3)).transpose(1, 3)  # (B, 1, T, n_mels)
        hidden = []
        for k, block in enumerate(self.blocks()):
            x = block(x, (2, 2) if k < 5 else (1, 1))
            if k >= 2:
                hidden.append(x)
        x = x.mean(dim=3)  # (B, C, T_6): average over frequency
        pooled = x.amax(dim=2) + x.mean(dim=2)  # (B, C): max over time + mean over time
        return F.relu(self.fc1(pooled)), hidden
