"""Audio of any length in bounded memory: the streamed path of :class:`~lmaczs.explain.Explainer`.

``Explainer.explain``, ``explain_topk`` and ``classify`` take this path for clips longer than
``Explainer.stream_over_s`` (60 s by default; ``stream=True`` forces it). It computes what the in-memory path
computes (the same windows, overlap-add and whole-file STFT; equal to float rounding, ~1e-7), in chunks:

1. **Spool.** A file is read in blocks, mixed to mono, resampled with soxr's streaming resampler (the same
   samples as ``soxr.resample`` of the whole file) and validated like :func:`lmaczs.audio.load_audio`; the wave is
   written as raw float32 to a work folder (an array input is loaded as usual, then written there).
2. **Encode.** The windows (:func:`lmaczs.windows.window_starts`) go through the CLAP ``Explainer.chunk_windows``
   at a time; each window's zero-shot probabilities are kept (``(W, P)``, small). When the prompt to explain
   depends on all windows (no ``target``: the top prompt of the mean), the hidden maps are spilled to the work
   folder and read back in step 3; with a ``target`` the masks are made in the same pass.
3. **Masks and audio.** The decoder's window masks are overlap-added by
   :class:`~lmaczs.windows.StreamStitcher`. Each run of frames that no later window touches gets its frames of
   the whole-file STFT (computed from the spooled wave with enough margin that they equal the whole-file STFT,
   file edges included), its masked spectrum, and the ISTFT samples that no later frame touches
   (:class:`StreamInverse`, the backend's own inverse on overlapping blocks of frames).
4. **Outputs.** The mask, the spectrogram, the explanation, the residual and the wave are raw float32 files in the
   work folder; the :class:`~lmaczs.explain.Explanation` holds them as read-only ``numpy.memmap`` arrays (the
   folder is deleted when the last Explanation using it is garbage-collected). The figure's time-pooled preview and
   the per-prompt timeline are kept in memory (a few MB). ``Explanation.save`` writes from the files in blocks.

Memory is the model plus ``O(chunk_windows × window)``, whatever the clip's length. Disk, per second of audio at
the backend's rate ``sr``: ``4·sr`` bytes for each of the wave, explanation and residual, ``4·F·sr/hop`` for each
of mask and spectrogram, and, while a clip without ``target`` is explained, the spilled hidden maps (1.2 MB/s for
the embedded model). The work folder is made in ``Explainer.work_dir`` (default: the system's temp folder,
``TMPDIR``).
"""

from __future__ import annotations

import math
import mmap
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

import numpy as np
import torch

from .audio import AudioInput, MIN_PEAK, MIN_SECONDS, Stft, check_audio_path, check_sample_rate, load_audio
from .errors import AudioError, first_line
from .timeline import GATE, Timeline, window_activity
from .windows import StreamStitcher, window_starts

if TYPE_CHECKING:  # pragma: no cover
    from .explain import Explainer, Explanation

BLOCK_FRAMES = 1 << 18  # input frames read per block while spooling (6 s at 44.1 kHz)


# -- raw float32 arrays on disk ----------------------------------------------------------------------------------
class Workdir:
    """A temporary folder, removed when this object is garbage-collected (or :meth:`cleanup` is called)."""

    def __init__(self, parent: str | os.PathLike | None = None):
        self.path = Path(tempfile.mkdtemp(prefix="lmaczs-stream-", dir=parent))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), True)

    def cleanup(self) -> None:
        self._finalizer()


class RawWriter:
    """Append rows of shape ``row_shape`` to a raw file; :meth:`close` returns the whole as a read-only memmap."""

    def __init__(self, path: Path, row_shape: tuple[int, ...] = (), dtype=np.float32):
        self.path, self.row_shape, self.dtype = Path(path), tuple(row_shape), np.dtype(dtype)
        self._fh = open(self.path, "wb")
        self.rows = 0

    def write(self, rows: np.ndarray | torch.Tensor) -> None:
        if isinstance(rows, torch.Tensor):
            rows = rows.detach().cpu().numpy()
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"rows of shape {rows.shape[1:]} written to a file of rows {self.row_shape}")
        rows.tofile(self._fh)
        self.rows += rows.shape[0]

    def close(self) -> np.ndarray:
        self._fh.close()
        if self.rows == 0:
            return np.zeros((0, *self.row_shape), dtype=self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.rows, *self.row_shape))


def row_blocks(a: np.ndarray, block: int = 8192) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, rows)`` of an array in blocks of rows. A memmap opened by :class:`RawWriter` (or any whole
    ``np.memmap`` of a file) is read with plain file reads, so reading it leaves no mapped pages behind (the
    process's resident memory stays what one block needs)."""
    n = a.shape[0]
    whole_map = isinstance(a, np.memmap) and getattr(a, "filename", None) and isinstance(a.base, mmap.mmap)
    row_items = int(np.prod(a.shape[1:], dtype=np.int64))
    for s in range(0, n, block):
        k = min(block, n - s)
        if whole_map:
            rows = np.fromfile(a.filename, dtype=a.dtype, count=k * row_items,
                               offset=a.offset + s * row_items * a.itemsize).reshape((k, *a.shape[1:]))
        else:
            rows = np.asarray(a[s:s + k])
        yield s, rows


def array_stats(a: np.ndarray, block: int = 8192) -> dict:
    """``{"mean", "max", "min", "abs_max"}`` of an array read in blocks (float64 sums)."""
    total, count, hi, lo, amax = 0.0, 0, -math.inf, math.inf, 0.0
    for _, rows in row_blocks(a, block):
        if rows.size:
            total += float(rows.sum(dtype=np.float64))
            count += rows.size
            hi, lo = max(hi, float(rows.max())), min(lo, float(rows.min()))
            amax = max(amax, float(np.abs(rows).max()))
    return {"mean": total / max(count, 1), "max": hi, "min": lo, "abs_max": amax}


@dataclass
class DiskWave:
    """A mono float32 wave at the backend's rate, on disk. ``data`` ``(N,)`` memmap; ``peak`` ``max |x|``."""

    data: np.ndarray
    peak: float
    sample_rate: int

    @property
    def length(self) -> int:
        return int(self.data.shape[0])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` as ``(stop − start,)`` float32, zeros outside ``[0, N)``."""
        out = np.zeros(max(0, stop - start), dtype=np.float32)
        a, b = max(start, 0), min(stop, self.length)
        if b > a:
            out[a - start:b - start] = np.fromfile(self.data.filename, dtype=np.float32, count=b - a,
                                                   offset=self.data.offset + 4 * a)
        return out


def audio_seconds(audio: AudioInput, sample_rate: int | None) -> Optional[float]:
    """The clip's length in seconds without decoding it (``None`` when it cannot be told cheaply)."""
    try:
        if isinstance(audio, (str, os.PathLike)):
            import soundfile as sf

            return float(sf.info(str(audio)).duration)
        shape = tuple(audio.shape)
        n = shape[0] if len(shape) == 1 else max(shape[:2])
        return n / float(sample_rate)
    except Exception:  # unreadable, odd shapes, no rate: the in-memory path reports it properly
        return None


def spool_audio(audio: AudioInput, target_sr: int, sample_rate: int | None, folder: Path, *,
                block_frames: int = BLOCK_FRAMES) -> DiskWave:
    """Load ``audio`` as mono float32 at ``target_sr`` into ``folder/wave.f32`` (a file in blocks: bounded memory).

    The checks are those of ``load_audio(..., require_signal=True)``: empty, NaN or infinite, shorter than
    ``MIN_SECONDS``, silent, near-silent or only a DC offset. Arrays are loaded by ``load_audio`` itself.
    """
    writer = RawWriter(folder / "wave.f32")
    if not isinstance(audio, (str, os.PathLike)):
        wave = load_audio(audio, target_sr, sample_rate, require_signal=True).numpy()
        writer.write(wave)
        return DiskWave(writer.close(), float(np.abs(wave).max()), target_sr)
    import soundfile as sf
    import soxr

    p = check_audio_path(audio)
    label = str(audio)
    try:
        fh = sf.SoundFile(str(p))
    except Exception as exc:  # the in-memory reader words these; a long file that fails here is rare
        raise AudioError(f"{p} is not a readable audio file ({first_line(exc)})") from None
    with fh:
        sr = check_sample_rate(fh.samplerate, label)
        stream = soxr.ResampleStream(sr, target_sr, 1, dtype="float32", quality="HQ") if sr != target_sr else None
        count, total, lo, hi, in_peak, out_peak = 0, 0.0, math.inf, -math.inf, 0.0, 0.0

        def put(samples: np.ndarray) -> None:
            nonlocal out_peak
            if samples.size:
                out_peak = max(out_peak, float(np.abs(samples).max()))
                writer.write(samples)

        while True:
            try:
                block = fh.read(block_frames, dtype="float32", always_2d=True)
            except Exception as exc:
                raise AudioError(f"cannot read audio file {p}: {first_line(exc)}") from None
            if block.shape[0] == 0:
                break
            mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
            if not np.all(np.isfinite(mono)):
                raise AudioError(f"{label}: audio contains NaN or infinite samples")
            count += mono.size
            total += float(mono.sum(dtype=np.float64))
            lo, hi = min(lo, float(mono.min())), max(hi, float(mono.max()))
            in_peak = max(in_peak, float(np.abs(mono).max()))
            put(stream.resample_chunk(mono, last=False) if stream else mono)
        if stream is not None:
            put(stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    if count == 0:
        raise AudioError(f"{label}: audio is empty")
    if count < MIN_SECONDS * sr:
        raise AudioError(f"{label}: audio is {count / sr:.3f} s long; at least {MIN_SECONDS} s is needed")
    if in_peak == 0.0:
        raise AudioError(f"{label}: audio is silent (all samples are zero)")
    if in_peak < MIN_PEAK:
        raise AudioError(f"{label}: audio is near-silent (peak {in_peak:.3g}, below {MIN_PEAK:g}): nothing to explain")
    mean = total / count
    if max(hi - mean, mean - lo) < MIN_PEAK:
        raise AudioError(f"{label}: audio is a constant (DC) offset of {mean:.3g} and nothing else: nothing to "
                         "explain")
    return DiskWave(writer.close(), out_peak, target_sr)


# -- whole-file STFT frames and ISTFT samples, chunk by chunk ---------------------------------------------------
def stft_frames(stft: Stft, wave: DiskWave, f0: int, f1: int, scale: torch.Tensor | None,
                device: torch.device) -> torch.Tensor:
    """Frames ``[f0, f1)`` of ``stft.forward`` of the whole (scaled) wave: ``(f1 − f0, F_lin)`` complex.

    The segment read around them has ``m`` frames of margin (``m·hop ≥ n_fft/2``), so none of the returned frames
    reaches the segment's padding, except at the file's own edges, where the segment is the file's edge and its
    padding is the whole-file STFT's padding. ``scale``: the wave is divided by it first (peak normalisation).
    """
    hop, n = stft.hop_length, wave.length
    m = -(-(stft.n_fft - stft.n_fft // 2) // hop)
    s0 = (f0 - m) * hop
    s0 = 0 if s0 <= 0 else s0
    s1 = (f1 - 1 + m) * hop
    s1 = n if s1 >= n else s1
    seg = torch.from_numpy(wave.read(s0, s1)).to(device)
    if scale is not None:
        seg = seg / scale
    spec = stft.forward(seg[None])[0]
    j0 = f0 - s0 // hop
    return spec[j0:j0 + (f1 - f0)]


class StreamInverse:
    """``stft.inverse`` of a whole file's frames, fed in order: :meth:`push` returns the output samples that no
    later frame touches (the backend's own inverse on a block of frames reaching back over every frame that
    touches them, so each sample gets the same overlap-add and window envelope as in one inverse of all frames).

    Args:
        stft: the backend's STFT. ``length``: output samples ``N``. ``total_frames``: frames of the whole file.
    """

    def __init__(self, stft: Stft, length: int, total_frames: int):
        self.stft, self.length, self.total = stft, length, total_frames
        self.half = stft.n_fft // 2
        self.frames: torch.Tensor | None = None  # frames [first, first + len) kept
        self.first = 0
        self.done = 0  # samples returned

    def _first_touching(self, sample: int) -> int:
        """The first frame whose window touches ``sample`` (frame t covers samples
        ``[t·hop − n_fft//2, t·hop − n_fft//2 + n_fft)``), one frame earlier for safety, at least 0."""
        hop = self.stft.hop_length
        t = (sample + self.half - self.stft.n_fft) // hop + 1
        return max(0, t - 1)

    def push(self, frames: torch.Tensor) -> torch.Tensor:
        """The next ``(k, F_lin)`` complex frames → the samples completed by them, ``(s,)``."""
        self.frames = frames if self.frames is None else torch.cat([self.frames, frames])
        end = self.first + self.frames.shape[0]
        stop = self.length if end >= self.total else min(self.length, end * self.stft.hop_length - self.half)
        if stop <= self.done:
            return frames.real.new_zeros(0)
        g0 = self._first_touching(self.done)
        block = self.frames[g0 - self.first:]
        start = g0 * self.stft.hop_length
        out = self.stft.inverse(block[None], stop - start)[0][self.done - start:]
        self.done = stop
        keep = self._first_touching(stop)
        self.frames = self.frames[keep - self.first:]
        self.first = keep
        return out


# -- the streamed explanation --------------------------------------------------------------------------------
class HiddenSpill:
    """The encoder's hidden maps of every window, spilled to raw files (one per map) and read back by chunks."""

    def __init__(self, folder: Path, shapes: Sequence[tuple[int, ...]]):
        self.writers = [RawWriter(folder / f"hidden{k}.f32", tuple(s)) for k, s in enumerate(shapes)]
        self.arrays: list[np.ndarray] | None = None

    def write(self, hidden: Sequence[torch.Tensor]) -> None:
        for w, h in zip(self.writers, hidden):
            w.write(h)

    def read(self, i: int, j: int, device: torch.device) -> list[torch.Tensor]:
        if self.arrays is None:
            self.arrays = [w.close() for w in self.writers]
        out = []
        for a in self.arrays:
            items = int(np.prod(a.shape[1:]))
            rows = np.fromfile(a.filename, dtype=np.float32, count=(j - i) * items, offset=i * items * 4)
            out.append(torch.from_numpy(rows.reshape((j - i, *a.shape[1:]))).to(device))
        return out

    def delete(self) -> None:
        for w in self.writers:
            if not w._fh.closed:
                w._fh.close()
            w.path.unlink(missing_ok=True)
        self.arrays = None


@dataclass
class StreamEncoded:
    """A long clip spooled and scored: what every explanation of it shares (cf. ``explain._Encoded``)."""

    wave: DiskWave
    starts: list[int]
    name: str
    prompts: list[str]
    text: torch.Tensor  # (P, D)
    window_probs: torch.Tensor  # (W, P)
    probs: torch.Tensor  # (P,)
    work: Workdir
    spill: Optional[HiddenSpill] = None


def _encode_chunks(ex: "Explainer", wave: DiskWave, starts: list[int], text: torch.Tensor,
                   spill: HiddenSpill | None, on_chunk=None) -> torch.Tensor:
    """Run the CLAP over the windows, ``ex.chunk_windows`` at a time. Returns ``(W, P)`` probabilities."""
    win, chunk = ex.clap.num_samples, max(1, int(ex.chunk_windows))
    out = []
    for i in range(0, len(starts), chunk):
        j = min(len(starts), i + chunk)
        wins = torch.from_numpy(np.stack([wave.read(s, s + win) for s in starts[i:j]])).to(ex.device)
        x, _ = ex.clap.analyze(ex.clap.prepare(wins))
        enc = ex.clap.encode_spec(x)
        probs = ex._probs(enc.embedding, text)
        if spill is not None:
            spill.write(enc.hidden)
        if on_chunk is not None:
            on_chunk(i, j, enc.hidden, probs)
        out.append(probs)
        del wins, x, enc
    return torch.cat(out)


def _spool(ex: "Explainer", audio: AudioInput, sample_rate: int | None, prompts: list[str]):
    name = str(audio) if isinstance(audio, (str, os.PathLike)) else "audio"
    work = Workdir(getattr(ex, "work_dir", None))
    wave = spool_audio(audio, ex.clap.sample_rate, sample_rate, work.path)
    starts = window_starts(wave.length, ex.clap.num_samples, ex.clap.front.stft.hop_length)
    return name, work, wave, starts, ex.clap.embed_text(prompts)


def open_stream(ex: "Explainer", audio: AudioInput, sample_rate: int | None, prompts: list[str],
                spill: bool) -> StreamEncoded:
    """Spool ``audio`` and score every window against ``prompts`` (spilling the hidden maps when ``spill``)."""
    name, work, wave, starts, text = _spool(ex, audio, sample_rate, prompts)
    sp = HiddenSpill(work.path, ex.clap.hidden_shapes()) if spill else None
    probs = _encode_chunks(ex, wave, starts, text, sp)
    return StreamEncoded(wave, starts, name, list(prompts), text, probs, probs.mean(0), work, sp)


class MaskStream:
    """One explanation of a spooled clip, built chunk by chunk (:meth:`feed` in window order, then :meth:`finish`).

    Args:
        ex: the explainer. ``wave``, ``starts``: the spooled clip and its windows. ``text``: ``(P, D)``.
        chosen / contrast: prompt indices (``contrast`` may be ``None``). ``folder``: where the outputs go.
        others: also decode the other prompts (in the windows that pass the timeline's gate) for the timeline.
    """

    def __init__(self, ex: "Explainer", wave: DiskWave, starts: list[int], text: torch.Tensor, chosen: int,
                 contrast: int | None, folder: Path, others: bool = True):
        from .viz import SpectrogramPreview

        self.ex, self.wave, self.starts, self.text = ex, wave, starts, text
        self.chosen, self.contrast, self.others = chosen, contrast, others
        clap = ex.clap
        self.stft_cfg = clap.front.stft
        self.domain = clap.domain
        hop = self.stft_cfg.hop_length
        self.total = self.stft_cfg.num_frames(wave.length)
        t_w, f = clap.mask_shape()
        self.mask_st = StreamStitcher(t_w, hop, self.total)
        self.cols_st = StreamStitcher(t_w, hop, self.total)
        folder.mkdir(parents=True, exist_ok=True)
        self.out = {"mask": RawWriter(folder / "mask.f32", (f,)), "spectrogram": RawWriter(folder / "spec.f32", (f,)),
                    "audio": RawWriter(folder / "audio.f32"), "residual": RawWriter(folder / "residual.f32")}
        self.inv_audio = StreamInverse(self.stft_cfg, wave.length, self.total)
        self.inv_resid = StreamInverse(self.stft_cfg, wave.length, self.total)
        self.preview = SpectrogramPreview(self.total, f, clap.domain_name)
        peak = torch.tensor(wave.peak, dtype=torch.float32, device=ex.device)
        if clap.peak_normalize:  # as clap.prepare(whole wave) and the gain of explain._finish
            self.scale = peak.clamp_min(1e-8)
            self.gain = peak / (peak / self.scale).clamp_min(1e-12)
        else:
            self.scale, self.gain = None, peak / peak.clamp_min(1e-12)
        self.columns: list[torch.Tensor] = []
        self.mask_sum, self.audio_peak = 0.0, 0.0

    def feed(self, i: int, j: int, hidden: list[torch.Tensor], probs: torch.Tensor) -> None:
        """Windows ``[i, j)``: their hidden maps and ``(j − i, P)`` probabilities."""
        ex, text = self.ex, self.text
        masks = ex._masks(text[self.chosen], hidden)
        if self.contrast is not None:
            masks = masks * (1 - ex._masks(text[self.contrast], hidden))
        decode = (lambda p, idx: ex._masks(text[p], [h[idx] for h in hidden])) if self.others else None
        cols = window_activity(masks, self.chosen, probs, decode)
        nxt = self.starts[j] if j < len(self.starts) else None
        a, rows = self.mask_st.add(masks, self.starts[i:j], nxt)
        _, crow = self.cols_st.add(cols, self.starts[i:j], nxt)
        self._frames(a, rows, crow)

    def _frames(self, a: int, rows: torch.Tensor, cols: torch.Tensor) -> None:
        k = rows.shape[0]
        if k == 0:
            return
        spec = stft_frames(self.stft_cfg, self.wave, a, a + k, self.scale, self.ex.device)
        x = self.domain.analyze(spec[None])[0]
        audio = self.inv_audio.push(self.domain.masked_stft(rows[None], spec[None])[0]) * self.gain
        resid = self.inv_resid.push(self.domain.masked_stft((1 - rows)[None], spec[None])[0]) * self.gain
        x_np, m_np = x.cpu().numpy(), rows.cpu().numpy()
        self.out["mask"].write(m_np)
        self.out["spectrogram"].write(x_np)
        self.out["audio"].write(audio)
        self.out["residual"].write(resid)
        self.preview.add(x_np, m_np)
        self.columns.append(cols.cpu())
        self.mask_sum += float(m_np.sum(dtype=np.float64))
        if audio.numel():
            self.audio_peak = max(self.audio_peak, float(audio.abs().max()))

    def finish(self) -> dict:
        """Flush; returns the arrays (memmaps), timeline columns ``(T, 2P)`` and statistics."""
        a, rows = self.mask_st.finish()
        _, crow = self.cols_st.finish()
        self._frames(a, rows, crow)
        arrays = {k: w.close() for k, w in self.out.items()}
        f = arrays["mask"].shape[1]
        return {**arrays, "columns": torch.cat(self.columns).numpy() if self.columns else None,
                "preview": self.preview.result(),
                "stats": {"mask_mean": self.mask_sum / max(1, self.total * f), "audio_peak": self.audio_peak}}


def finish_explanation(ex: "Explainer", enc: StreamEncoded, chosen: str, contrast: str | None,
                       parts: dict) -> "Explanation":
    """An :class:`~lmaczs.explain.Explanation` holding the streamed outputs."""
    from .explain import Explanation

    prompts = enc.prompts
    n, sr = enc.wave.length, ex.clap.sample_rate
    cols = parts["columns"]
    p = len(prompts)
    timeline = Timeline(prompts=list(prompts), hop_s=ex.clap.front.stft.hop_length / sr, duration_s=n / sr,
                        activity=cols[:, :p].copy(), scores=cols[:, p:].copy(), gate=GATE)
    e = Explanation(scores=dict(zip(prompts, map(float, enc.probs))), prediction=chosen, mask=parts["mask"],
                    audio=parts["audio"], residual=parts["residual"], sample_rate=sr,
                    spectrogram=parts["spectrogram"], window_scores=enc.window_probs.cpu().numpy(),
                    backend=ex.clap.describe(), source=enc.name, contrast=contrast,
                    listenable=ex.clap.domain.listenable, original=enc.wave.data, timeline=timeline,
                    freqs=row_frequencies(ex.clap))
    e._store = {"work": enc.work, "preview": parts["preview"], **parts["stats"]}
    e.extra["streamed"] = True
    return e


def explain_spilled(ex: "Explainer", enc: StreamEncoded, chosen: int, contrast: int | None,
                    folder_name: str = "explanation") -> "Explanation":
    """One streamed explanation of a clip opened with ``open_stream(..., spill=True)``: masks from the spill."""
    stream = MaskStream(ex, enc.wave, enc.starts, enc.text, chosen, contrast, enc.work.path / folder_name)
    chunk = max(1, int(ex.chunk_windows))
    for i in range(0, len(enc.starts), chunk):
        j = min(len(enc.starts), i + chunk)
        stream.feed(i, j, enc.spill.read(i, j, ex.device), enc.window_probs[i:j])
    return finish_explanation(ex, enc, enc.prompts[chosen], None if contrast is None else enc.prompts[contrast],
                              stream.finish())


def explain_one_pass(ex: "Explainer", audio: AudioInput, sample_rate: int | None, prompts: list[str],
                     chosen: int, contrast: int | None) -> "Explanation":
    """One streamed explanation when the prompt is known up front: the masks are made while the clip is
    encoded (no spill)."""
    name, work, wave, starts, text = _spool(ex, audio, sample_rate, prompts)
    stream = MaskStream(ex, wave, starts, text, chosen, contrast, work.path / "explanation")
    probs = _encode_chunks(ex, wave, starts, text, None, on_chunk=stream.feed)
    enc = StreamEncoded(wave, starts, name, list(prompts), text, probs, probs.mean(0), work, None)
    return finish_explanation(ex, enc, prompts[chosen], None if contrast is None else prompts[contrast],
                              stream.finish())


def row_frequencies(clap) -> np.ndarray:
    """``(F,)`` centre frequency in Hz of each row of the backend's masking domain (STFT bins, or the mel
    filters' centroids)."""
    stft = clap.front.stft
    lin = np.arange(stft.n_freqs) * clap.sample_rate / stft.n_fft
    if clap.domain_name == "stft":
        return lin
    fb = clap.front.mel_fb.detach().cpu().numpy().astype(np.float64)  # (F_lin, n_mels)
    return (lin @ fb) / np.maximum(fb.sum(0), 1e-12)


def explain_long(ex: "Explainer", audio: AudioInput, prompts: list[str], target: str | None,
                 contrast: str | None, sample_rate: int | None) -> "Explanation":
    """``Explainer.explain`` on the streamed path (prompts already checked). With a ``target`` one pass; without,
    the top prompt is known only after every window is scored, so the hidden maps are spilled and read back."""
    from .errors import PromptError

    c = None if contrast is None else prompts.index(contrast)
    if target is not None:
        if contrast == target:
            raise PromptError("contrast prompt must differ from the explained prompt")
        return explain_one_pass(ex, audio, sample_rate, prompts, prompts.index(target), c)
    enc = open_stream(ex, audio, sample_rate, prompts, spill=True)
    try:
        chosen = int(enc.probs.argmax())
        if c == chosen:
            raise PromptError("contrast prompt must differ from the explained prompt")
        return explain_spilled(ex, enc, chosen, c)
    finally:
        enc.spill.delete()


def explain_topk_long(ex: "Explainer", audio: AudioInput, prompts: list[str], k: int,
                      sample_rate: int | None) -> list["Explanation"]:
    """``Explainer.explain_topk`` on the streamed path: one encoding pass (spilled), one mask pass per prompt."""
    enc = open_stream(ex, audio, sample_rate, prompts, spill=True)
    try:
        order = torch.argsort(enc.probs, descending=True, stable=True)[:k].tolist()
        out = []
        for rank, i in enumerate(order, 1):
            e = explain_spilled(ex, enc, i, None, folder_name=f"top{rank}")
            e.extra["rank"] = rank
            out.append(e)
        return out
    finally:
        enc.spill.delete()
