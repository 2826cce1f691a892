"""Figures: spectrogram, mask and masked spectrogram side by side (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _imshow(ax, data: np.ndarray, extent, title: str, cmap: str, vmin=None, vmax=None):
    im = ax.imshow(data.T, origin="lower", aspect="auto", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax,
                   interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("time (s)")
    return im


def explanation_figure(spec: np.ndarray, mask: np.ndarray, duration: float, max_freq: float, title: str,
                       freq_label: str = "frequency (kHz)"):
    """Three panels for ``spec (T, F)`` (≥ 0, log1p or power) and ``mask (T, F)`` in [0, 1]. Returns a Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = np.log1p(spec) if spec.max() > 50 else spec  # compress mel power; log1p|S| is already compressed
    vmax = float(shown.max()) or 1.0
    extent = (0.0, duration, 0.0, max_freq / 1000.0)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True, constrained_layout=True)
    _imshow(axes[0], shown, extent, "input spectrogram", "magma", 0, vmax)
    im = _imshow(axes[1], mask, extent, f"mask (mean {mask.mean():.3f})", "viridis", 0, 1)
    fig.colorbar(im, ax=axes[1], fraction=0.05)
    _imshow(axes[2], shown * mask, extent, "masked spectrogram (the explanation)", "magma", 0, vmax)
    axes[0].set_ylabel(freq_label)
    fig.suptitle(title, fontsize=11)
    return fig


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    from .checkpoint import atomic_write

    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
