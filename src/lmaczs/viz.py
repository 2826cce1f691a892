"""Figures: the input and the explanation as dB spectrograms on one scale, the mask, and a timeline per prompt.

Spectrograms are shown in dB like librosa's ``specshow`` or Audacity's spectrogram view: power relative to the
input's loudest bin (0 dB), 80 dB of range, time in seconds, frequency in Hz (ticks ``500``, ``1k``, ``2k``, …),
linear or logarithmic. The explanation (the masked spectrogram you hear) uses the input's scale, so what the mask
removed shows as darker. Long clips are pooled in time to at most :data:`MAX_COLUMNS` columns (mean power per
column) by :class:`SpectrogramPreview`, which takes the frames chunk by chunk, so a figure of a long clip never
needs its whole spectrogram in memory.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .timeline import Timeline

MAX_COLUMNS = 1600  # time columns of a figure's spectrograms (a panel is at most ~1400 px wide)
TOP_DB = 80.0
LONG_SECONDS = 20.0  # clips longer than this get the stacked layout with a timeline


# -- dB scaling -----------------------------------------------------------------------------------------------
def power_to_db(power: np.ndarray, ref: float = 1.0, amin: float = 1e-10, top_db: float | None = TOP_DB
                ) -> np.ndarray:
    """Power to decibels: ``10·log10(max(power, amin) / max(ref, amin))``; with ``top_db``, values more than
    ``top_db`` below the result's maximum are raised to that floor. Same shape as ``power``."""
    p = np.asarray(power, dtype=np.float64)
    db = 10.0 * np.log10(np.maximum(p, amin)) - 10.0 * math.log10(max(float(ref), amin))
    if top_db is not None and db.size:
        db = np.maximum(db, db.max() - top_db)
    return db


def amplitude_to_db(amplitude: np.ndarray, ref: float = 1.0, amin: float = 1e-5, top_db: float | None = TOP_DB
                    ) -> np.ndarray:
    """Magnitude to decibels: ``20·log10(max(|a|, amin) / max(ref, amin))`` (:func:`power_to_db` of its
    square)."""
    a = np.abs(np.asarray(amplitude, dtype=np.float64))
    return power_to_db(a * a, ref=float(ref) ** 2, amin=amin * amin, top_db=top_db)


def domain_power(x: np.ndarray, domain: str) -> np.ndarray:
    """Power of a masking-domain spectrogram ``x (T, F)``: ``expm1(x)²`` for ``stft`` (x = log1p|S|), ``x``
    itself for ``mel`` (mel power)."""
    x = np.asarray(x, dtype=np.float64)
    return np.expm1(x) ** 2 if domain == "stft" else x


def masked_power(x: np.ndarray, mask: np.ndarray, domain: str) -> np.ndarray:
    """Power of the explanation ``mask ⊙ x`` (what the listenable audio holds): ``expm1(mask·x)²`` for
    ``stft``, ``mask·x`` for ``mel``. ``(T, F)``."""
    return domain_power(np.asarray(mask, dtype=np.float64) * np.asarray(x, dtype=np.float64), domain)


class SpectrogramPreview:
    """Time-pooled input power, explanation power and mask, fed in consecutive chunks of frames.

    Args:
        total_frames: ``T`` of the clip.
        n_rows: ``F`` of the masking domain.
        domain: ``"stft"`` or ``"mel"`` (how X becomes power).
        max_columns: at most this many columns; each pools ``factor = ceil(T / max_columns)`` frames.
    """

    def __init__(self, total_frames: int, n_rows: int, domain: str, max_columns: int = MAX_COLUMNS):
        self.total, self.domain = total_frames, domain
        self.factor = max(1, -(-total_frames // max_columns))
        cols = -(-total_frames // self.factor)
        self._sums = np.zeros((3, cols, n_rows), dtype=np.float64)
        self._counts = np.zeros(cols, dtype=np.int64)
        self._next = 0

    def add(self, x: np.ndarray, mask: np.ndarray) -> None:
        """The next frames: ``x (k, F)`` masking-domain input and ``mask (k, F)``."""
        k = x.shape[0]
        if k == 0:
            return
        frames = np.arange(self._next, self._next + k)
        cuts = np.flatnonzero(np.concatenate([[True], frames[1:] % self.factor == 0]))
        cols = frames[cuts] // self.factor
        for i, rows in enumerate((domain_power(x, self.domain), masked_power(x, mask, self.domain),
                                  np.asarray(mask, dtype=np.float64))):
            self._sums[i, cols] += np.add.reduceat(rows, cuts, axis=0)
        self._counts[cols] += np.diff(np.concatenate([cuts, [k]]))
        self._next += k

    def result(self) -> dict:
        """``{"power_in", "power_out", "mask"}`` each ``(columns, F)`` (means), and ``"factor"``."""
        n = np.maximum(self._counts, 1)[:, None]
        return {"power_in": self._sums[0] / n, "power_out": self._sums[1] / n, "mask": self._sums[2] / n,
                "factor": self.factor}


def preview_of(spec: np.ndarray, mask: np.ndarray, domain: str, max_columns: int = MAX_COLUMNS,
               block: int = 8192) -> dict:
    """:class:`SpectrogramPreview` of whole ``(T, F)`` arrays (read in blocks of frames: works on memmaps)."""
    from .longaudio import row_blocks

    prev = SpectrogramPreview(spec.shape[0], spec.shape[1], domain, max_columns)
    for (_, x), (_, m) in zip(row_blocks(spec, block), row_blocks(mask, block)):
        prev.add(x, m)
    return prev.result()


# -- axes -----------------------------------------------------------------------------------------------------
def _hz(f: float, _pos=None) -> str:
    if f >= 1000:
        return f"{f / 1000:g}k"
    return f"{f:g}"


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around increasing ``centres``: the midpoints, and half a step beyond each end."""
    c = np.asarray(centres, dtype=np.float64)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def time_edges(columns: int, factor: int, hop_s: float) -> np.ndarray:
    """``(columns + 1,)`` edges in seconds of pooled columns (column i pools frames ``[i·factor, (i+1)·factor)``,
    frame t stands for ``[(t − ½)·hop_s, (t + ½)·hop_s)``); the axes are then limited to the clip."""
    return (np.arange(columns + 1) * factor - 0.5) * hop_s


def _uniform(edges: np.ndarray) -> bool:
    d = np.diff(edges)
    return bool(d.size and np.allclose(d, d[0], rtol=1e-6, atol=0))


def _spec_axes(ax, data, t_edges, f_edges, cmap, vmin, vmax, title, log_freq, xlim, ylim):
    """One spectrogram-like panel ``data (columns, F)``: an image on uniform linear grids (fast), a mesh on a log
    axis or uneven rows (mel bands)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if not log_freq and _uniform(f_edges):
        im = ax.imshow(data.T, origin="lower", aspect="auto", interpolation="nearest", cmap=cmap, vmin=vmin,
                       vmax=vmax, extent=(t_edges[0], t_edges[-1], f_edges[0], f_edges[-1]))
    else:
        im = ax.pcolormesh(t_edges, f_edges, data.T, cmap=cmap, vmin=vmin, vmax=vmax, shading="flat",
                           rasterized=True)
    ax.set_title(title, fontsize=10)
    ax.set_xlim(*xlim)
    if log_freq:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(*ylim)
    ax.yaxis.set_major_formatter(FuncFormatter(_hz))
    ax.set_ylabel("frequency (Hz)")
    return im


def explanation_figure(preview: dict, freqs: np.ndarray, hop_s: float, duration: float, title: str, *,
                       mask_mean: float, max_freq: float | None = None, log_freq: bool = False,
                       timeline: Optional["Timeline"] = None,
                       explained: str | None = None, top_db: float = TOP_DB, timeline_kwargs: dict | None = None):
    """The explanation figure. Returns a matplotlib Figure.

    Args:
        preview: :meth:`SpectrogramPreview.result` (``power_in``, ``power_out``, ``mask`` each ``(C, F)``).
        freqs: ``(F,)`` centre frequency in Hz of each row; ``max_freq``: the top of the axis (default the
            last centre, e.g. the Nyquist frequency of an STFT).
        hop_s: seconds per frame; ``duration``: the clip's length in seconds.
        mask_mean: the mask's mean over the whole clip (the panel title).
        log_freq: logarithmic frequency axis.
        timeline: per-prompt activity; drawn (with the active spans) for clips longer than
            :data:`LONG_SECONDS`. ``explained``: the prompt the mask explains (highlighted).
    Layout: a clip up to :data:`LONG_SECONDS` gets three panels side by side (input dB · mask · explanation dB);
    a longer one gets them stacked at full width, and a timeline panel under them.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p_in, p_out, mask = preview["power_in"], preview["power_out"], preview["mask"]
    ref = float(p_in.max()) if p_in.size else 1.0
    db_in = power_to_db(p_in, ref=ref, top_db=None)
    db_out = power_to_db(p_out, ref=ref, top_db=None)
    vmin = -top_db
    freqs = np.asarray(freqs, dtype=np.float64)
    top = float(max_freq) if max_freq else float(freqs[-1])
    f_edges = _edges(freqs)
    t_edges = time_edges(mask.shape[0], preview["factor"], hop_s)
    lowest = float(freqs[1] if freqs.size > 1 and freqs[0] <= 0 else freqs[0])  # a log axis cannot show 0 Hz
    ylim = (max(20.0, lowest), top) if log_freq else (max(0.0, float(f_edges[0])), top)
    lims = {"xlim": (0.0, duration), "ylim": ylim}
    long = duration > LONG_SECONDS
    with_timeline = long and timeline is not None

    if long:
        rows = [1, 1, 1] + ([0.35 + 0.3 * len(timeline.prompts)] if with_timeline else [])
        fig, axes = plt.subplots(len(rows), 1, figsize=(13, sum(2.3 * r for r in rows) + 0.8), sharex=True,
                                 gridspec_kw={"height_ratios": rows}, constrained_layout=True)
        order = [axes[0], axes[1], axes[2]]
    else:
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), sharey=True, constrained_layout=True)
        order = [axes[0], axes[1], axes[2]]
    ax_in, ax_mask, ax_out = order
    im_db = _spec_axes(ax_in, np.maximum(db_in, vmin), t_edges, f_edges, "magma", vmin, 0.0,
                       "input spectrogram (dB)", log_freq, **lims)
    im_mask = _spec_axes(ax_mask, mask, t_edges, f_edges, "viridis", 0.0, 1.0, f"mask (mean {mask_mean:.3f})",
                         log_freq, **lims)
    im_out = _spec_axes(ax_out, np.maximum(db_out, vmin), t_edges, f_edges, "magma", vmin, 0.0,
                        "explanation: masked spectrogram (dB, input's scale)", log_freq, **lims)
    if long:
        for ax, im, label in ((ax_in, im_db, "dB re input max"), (ax_mask, im_mask, "mask"),
                              (ax_out, im_out, "dB re input max")):
            fig.colorbar(im, ax=ax, label=label, fraction=0.025, pad=0.01)
        for ax in (ax_in, ax_mask):
            ax.tick_params(labelbottom=False)
        if with_timeline:
            _timeline_axes(axes[3], timeline, explained, duration, **(timeline_kwargs or {}))
            axes[3].set_xlabel("time (s)")
        else:
            ax_out.set_xlabel("time (s)")
    else:
        fig.colorbar(im_mask, ax=ax_mask, label="mask", fraction=0.05)
        fig.colorbar(im_db, ax=ax_out, label="dB re input max", fraction=0.05)
        for ax in order:
            ax.set_xlabel("time (s)")
        ax_mask.set_ylabel("")
        ax_out.set_ylabel("")
    fig.suptitle(title, fontsize=11)
    return fig


def _timeline_axes(ax, timeline: "Timeline", explained: str | None, duration: float, **segment_kwargs) -> None:
    """One lane per prompt: the window score (grey), the gated mask activity (filled), the threshold (dashed)
    and the active spans of the label track (bars)."""
    import matplotlib.pyplot as plt

    from .timeline import THRESHOLD

    threshold = segment_kwargs.get("threshold", THRESHOLD)
    t = timeline.times
    factor = max(1, -(-len(t) // (2 * MAX_COLUMNS)))  # max-pool: a short burst stays visible
    cols = -(-len(t) // factor)
    pad = cols * factor - len(t)

    def pooled(v: np.ndarray) -> np.ndarray:
        return np.pad(v, (0, pad), mode="edge").reshape(cols, factor).max(1)

    tc = np.pad(t, (0, pad), mode="edge").reshape(cols, factor).mean(1)
    colors = plt.get_cmap("tab10")
    n = len(timeline.prompts)
    segments = timeline.segments(**segment_kwargs)
    for i, prompt in enumerate(timeline.prompts):
        base = n - 1 - i  # first prompt on top
        c = colors(i % 10)
        if timeline.scores is not None:
            ax.plot(tc, base + 0.1 + 0.8 * pooled(timeline.scores[:, i]), color="0.6", lw=0.7)
        act = pooled(timeline.activity[:, i])
        ax.fill_between(tc, base + 0.1, base + 0.1 + 0.8 * act, color=c, alpha=0.55, lw=0)
        ax.plot([0, duration], [base + 0.1 + 0.8 * threshold] * 2, color=c, lw=0.6, ls="--")
        for s in segments:
            if s.label == prompt:
                ax.plot([s.start, s.end], [base + 0.05, base + 0.05], color=c, lw=4, solid_capstyle="butt")
    for k in range(1, n):
        ax.axhline(k, color="0.85", lw=0.8)
    ax.set_yticks([n - 1 - i + 0.5 for i in range(n)])
    ax.set_yticklabels(timeline.prompts, fontsize=9)
    for label in ax.get_yticklabels():
        if label.get_text() == explained:
            label.set_fontweight("bold")
    ax.set_ylim(0, n)
    ax.set_xlim(0, duration)
    gate = "" if timeline.gate is None else f" where the window's score ≥ {timeline.gate:g}"
    ax.set_title(f"timeline: mask activity per prompt{gate} (filled), window score (grey), "
                 f"active spans ≥ {threshold:g} (bars = label track)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    from .checkpoint import atomic_write

    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
