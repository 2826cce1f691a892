"""Explain a whole corpus: batched, sharded, resumable (``lmac-zs explain-corpus``).

    lmac-zs explain-corpus --manifest files.csv --prompts prompts.txt --out expl/ [--shard 0/4] [--wav]
    torchrun --nproc_per_node 4 -m lmaczs.cli explain-corpus ...      # shard = (RANK, WORLD_SIZE)

Windows of several files go through the CLAP and the decoder in one batch; each file's windows are then stitched
exactly as :meth:`Explainer.explain` does, so results equal one-file-at-a-time explanations. Output layout::

    out/run.json                          prompts, backend, decoder (a restart must use the same)
    out/results[.I-of-N].jsonl            one JSON line per file: scores, prediction, mask statistics, outputs
    out/masks/<stem>-<hash>.npz           mask (T, F) float16, window_scores (W, P), window_starts (W,)
    out/wavs/<stem>-<hash>.explanation.wav   with --wav

Each line is written and flushed once the file's outputs are on disk, so a killed job loses at most the files in
flight; a restart skips every file that has a line in any ``results*.jsonl`` (errors included: a bad file is
recorded as ``{"path": ..., "error": ...}`` and the job goes on) and ignores a truncated last line.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .checkpoint import atomic_write, atomic_write_text, remove_stale_temps
from .checks import check_int, read_text_file
from .distributed import env_world
from .errors import DataError, LmacError, OutputError
from .explain import Explainer, Explanation, _Encoded, check_prompts
from .locking import DirLock

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
RUN_INFO = "run.json"


# -- inputs ----------------------------------------------------------------------------------------
def read_manifest(manifest: str | os.PathLike) -> list[Path]:
    """Audio files of a folder (recursive, sorted) or a manifest file, as absolute paths without duplicates.

    A manifest is a CSV with a ``path`` column (other columns are ignored) or a plain list, one path per line;
    relative paths are taken from the manifest's folder.
    """
    src = Path(manifest)
    if src.is_dir():  # symbolic links that lead nowhere are kept: they are recorded as bad files, not skipped
        files = sorted(p for p in src.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
                       and (p.is_file() or p.is_symlink()))
    elif src.is_file():
        lines = [ln for ln in read_text_file(src, "manifest").splitlines() if ln.strip()]
        if lines and "path" in next(csv.reader([lines[0]])):
            names = [row["path"] for row in csv.DictReader(lines)]
        else:
            names = [ln.strip() for ln in lines]
        files = [p if p.is_absolute() else src.parent / p for p in map(Path, filter(None, names))]
    else:
        raise DataError(f"manifest not found: {src} (give a folder of audio files or a CSV with a path column)")
    unique = list(dict.fromkeys(_absolute(p) for p in files))
    if not unique:
        raise DataError(f"{src} lists no audio files")
    return unique


def _absolute(path: Path) -> Path:
    """``path`` resolved, or only made absolute when it cannot be (a symbolic link loop: a bad file later)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: Python < 3.13 on a symlink loop
        return Path(os.path.abspath(path))


def read_prompts(path: str | os.PathLike) -> list[str]:
    """One prompt per line (blank lines ignored)."""
    return check_prompts([ln.strip() for ln in read_text_file(path, "prompts file").splitlines() if ln.strip()])


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → ``(i, n)`` with ``0 ≤ i < n``."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise DataError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise DataError(f"--shard {text}: need 0 <= I < N")
    return i, n


def shard_files(files: Sequence[Path], shard: tuple[int, int]) -> list[Path]:
    """Every n-th file from the i-th: shards are disjoint and together hold every file."""
    i, n = shard
    return list(files[i::n])


def output_key(path: Path) -> str:
    """A file name unique per input path: ``<stem>-<8 hex of the path's sha1>``."""
    return f"{path.stem}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


# -- results log -----------------------------------------------------------------------------------
def results_name(shard: tuple[int, int]) -> str:
    i, n = shard
    return "results.jsonl" if n == 1 else f"results.{i}-of-{n}.jsonl"


def read_results(out: Path) -> list[dict]:
    """Every complete line of every ``results*.jsonl`` in ``out`` (a truncated or broken line is skipped)."""
    records = []
    for log in sorted(out.glob("results*.jsonl")):
        for line in log.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and "path" in rec:
                records.append(rec)
    return records


class ResultsLog:
    """Append-only JSONL: one line per file, written and flushed in one go (the file is opened at first write)."""

    def __init__(self, path: Path):
        self.path = path
        self.fh = None

    def _open(self):
        if self.path.exists():  # drop a line cut short by a kill, so the next one starts on a fresh line
            data = self.path.read_bytes()
            keep = data.rfind(b"\n") + 1
            if keep < len(data):
                with self.path.open("r+b") as fh:
                    fh.truncate(keep)
        return self.path.open("a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self.fh = self.fh or self._open()
        self.fh.write(json.dumps(record) + "\n")
        self.fh.flush()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def check_run_info(out: Path, info: dict) -> None:
    """Write ``run.json`` or check that an earlier run of this folder used the same prompts and model."""
    path = out / RUN_INFO
    if path.is_file():
        old = json.loads(path.read_text())
        for key in ("prompts", "backend", "decoder"):
            if old.get(key) != info[key]:
                raise LmacError(f"{out} holds results made with other {key}; use another --out or the same "
                                f"settings (see {path})")
        return
    atomic_write_text(path, json.dumps(info, indent=2))


def decoder_fingerprint(decoder: torch.nn.Module) -> str:
    """sha1 of the decoder's weights (a restart must explain with the same decoder)."""
    h = hashlib.sha1()
    for name, t in decoder.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# -- batched inference -----------------------------------------------------------------------------
@dataclass
class _Loaded:
    path: Path
    wave: torch.Tensor  # (N,)
    wins: torch.Tensor  # (W, num_samples)
    starts: list[int]


@torch.no_grad()
def explain_batch(ex: Explainer, files: Sequence[_Loaded], text: torch.Tensor, prompts: Sequence[str]
                  ) -> list[Explanation]:
    """Explain the top prompt of several loaded files with one CLAP pass and one decoder pass over all windows.

    Same steps as :meth:`Explainer.explain` (mean window probabilities pick the prompt, each window's mask under
    that prompt, stitched and synthesised per file). ``text`` is ``(P, D)``, the prompts' embeddings.
    """
    wins = torch.cat([f.wins for f in files])
    x, _ = ex.clap.analyze(wins)
    enc = ex.clap.encode_spec(x)
    probs = ex._probs(enc.embedding, text)  # (W_total, P)
    bounds = np.cumsum([0] + [f.wins.shape[0] for f in files])
    chosen = [int(probs[a:b].mean(0).argmax()) for a, b in zip(bounds[:-1], bounds[1:])]
    rows = torch.tensor([c for c, f in zip(chosen, files) for _ in range(f.wins.shape[0])], device=text.device)
    masks = ex.decoder(text[rows], enc.hidden)
    out = []
    for f, c, a, b in zip(files, chosen, bounds[:-1], bounds[1:]):
        enc_f = _Encoded(f.wave, f.starts, str(f.path), list(prompts), x[a:b], [h[a:b] for h in enc.hidden], text,
                         probs[a:b], probs[a:b].mean(0))
        out.append(ex._finish(enc_f, masks[a:b], prompts[c], None))
    return out


@contextmanager
def corpus_lock(out: Path, shard: tuple[int, int], mine: Sequence[Path]) -> Iterator[None]:
    """Keep two jobs from writing one results file: an unsharded job holds ``out/.lock`` alone; a sharded job
    shares it with the other shards (they start together under torchrun) and holds ``out/.lock.I-of-N`` alone.

    Temp files that a killed job left are removed: all of them by an unsharded job, else those of this shard's
    files (``mine``).
    """
    i, n = shard
    with ExitStack() as stack:
        if n == 1:
            stack.enter_context(DirLock(out, owner="another explain-corpus job"))
            for folder in (out, out / "masks", out / "wavs"):
                remove_stale_temps(folder)
        else:
            stack.enter_context(DirLock(out, f".lock.{i}-of-{n}", owner=f"another explain-corpus job on shard {i}/{n}"))
            stack.enter_context(DirLock(out, shared=True, owner="an unsharded explain-corpus job"))
            keys = [output_key(p) for p in mine]
            remove_stale_temps(out / "masks", {f"{k}.npz" for k in keys})
            remove_stale_temps(out / "wavs", {f"{k}.explanation.wav" for k in keys})
        yield


def _prefetch(load, paths: Iterable[Path], depth: int) -> Iterator[tuple[Path, Future]]:
    """``(path, future of load(path))`` in order, loading up to ``depth`` files ahead in a thread."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmaczs-load") as pool:
        queue: deque[tuple[Path, Future]] = deque()
        for path in paths:
            queue.append((path, pool.submit(load, path)))
            if len(queue) > depth:
                yield queue.popleft()
        while queue:
            yield queue.popleft()


def _error_text(exc: BaseException) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else ""
    return msg if isinstance(exc, LmacError) else f"{type(exc).__name__}: {msg}"


def explain_corpus(ex: Explainer, files: Sequence[Path], prompts: Sequence[str], out: str | os.PathLike, *,
                   batch_size: int = 16, wav: bool = False, shard: tuple[int, int] = (0, 1),
                   progress: bool = True) -> dict:
    """Explain this shard's files that have no result yet; append one JSONL line per file.

    Args:
        ex: an :class:`Explainer` with a decoder.
        files: the whole corpus (every shard passes the same list), e.g. from :func:`read_manifest`.
        prompts: candidate prompts; each file's top prompt is explained.
        batch_size: windows per CLAP/decoder batch (a file with more windows gets a batch of its own).
        wav: also write the listenable explanations.
        shard: ``(i, n)``: this job explains ``files[i::n]``.
    Returns:
        ``{"done", "errors", "skipped", "seconds", "clips_per_s", "results"}`` for this call.
    """
    if ex.decoder is None:
        raise LmacError("explain-corpus needs a decoder: pass --decoder RUN_DIR or use an embedded model")
    check_int("--batch-size", batch_size)
    prompts = check_prompts(list(prompts))
    out = Path(out)
    with corpus_lock(out, shard, shard_files(files, shard)):
        return _explain_locked(ex, files, prompts, out, batch_size=batch_size, wav=wav, shard=shard,
                               progress=progress)


def _explain_locked(ex: Explainer, files: Sequence[Path], prompts: list[str], out: Path, *, batch_size: int,
                    wav: bool, shard: tuple[int, int], progress: bool) -> dict:
    """The body of :func:`explain_corpus`, run while this job holds its lock on ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    check_run_info(out, {"prompts": prompts, "backend": ex.clap.describe(),
                         "decoder": decoder_fingerprint(ex.decoder),
                         "lmaczs_version": __version__})
    done = {rec["path"] for rec in read_results(out)}
    mine = shard_files(files, shard)
    todo = [p for p in mine if str(p) not in done]
    log = ResultsLog(out / results_name(shard))
    (out / "masks").mkdir(exist_ok=True)
    if wav:
        (out / "wavs").mkdir(exist_ok=True)
    text = ex.clap.embed_text(prompts)
    counts = {"done": 0, "errors": 0}

    def load(path: Path) -> _Loaded:
        wave, wins, starts, _ = ex._windows(path, None)
        return _Loaded(path, wave, wins, starts)

    def record(e: Explanation, f: _Loaded) -> dict:
        key = output_key(f.path)
        outputs = {"mask": f"masks/{key}.npz"}
        arrays = {"mask": e.mask.astype(np.float16), "window_scores": e.window_scores.astype(np.float32),
                  "window_starts": np.asarray(f.starts, dtype=np.int64)}

        def save_npz(tmp: str) -> None:
            with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a bare name
                np.savez_compressed(fh, **arrays)

        atomic_write(out / outputs["mask"], save_npz)
        if wav:
            import soundfile as sf

            outputs["wav"] = f"wavs/{key}.explanation.wav"
            peak = float(np.abs(e.audio).max()) if e.audio.size else 0.0
            audio = (e.audio / peak if peak > 1.0 else e.audio).astype(np.float32)  # never clip
            atomic_write(out / outputs["wav"], lambda tmp: sf.write(tmp, audio, e.sample_rate, format="WAV",
                                                                    subtype="FLOAT"))
        mask = e.mask
        return {"path": str(f.path), "prediction": e.prediction, "scores": e.scores,
                "mask": {"mean": float(mask.mean()), "max": float(mask.max()),
                         "above_half": float((mask > 0.5).mean())},
                "outputs": outputs, "windows": len(f.starts), "seconds": len(e.audio) / e.sample_rate,
                "sample_rate": e.sample_rate}

    def finish(batch: list[_Loaded]) -> None:
        try:
            results = list(zip(batch, explain_batch(ex, batch, text, prompts)))
        except Exception:  # one file spoils the batch: go one by one to find it
            results = []
            for f in batch:
                try:
                    results.append((f, explain_batch(ex, [f], text, prompts)[0]))
                except Exception as exc:
                    fail(f.path, exc)
        for f, e in results:
            try:
                rec = record(e, f)
            except OutputError:  # a full disk or a read-only folder is no fault of the file: stop, do not record
                raise
            except Exception as exc:
                fail(f.path, exc)
                continue
            log.write(rec)
            counts["done"] += 1
            bar.update(1)

    def fail(path: Path, exc: BaseException) -> None:
        log.write({"path": str(path), "error": _error_text(exc)})
        counts["errors"] += 1
        bar.update(1)

    i, n = shard
    desc = "explaining" + (f" (shard {i}/{n})" if n > 1 else "")
    bar = tqdm(total=len(todo), desc=desc, unit="clip", disable=not progress)
    t0 = time.perf_counter()
    batch: list[_Loaded] = []
    try:
        for path, fut in _prefetch(load, todo, depth=max(2, batch_size)):
            try:
                f = fut.result()
            except Exception as exc:
                fail(path, exc)
                continue
            if batch and sum(b.wins.shape[0] for b in batch) + f.wins.shape[0] > batch_size:
                finish(batch)
                batch = []
            batch.append(f)
        if batch:
            finish(batch)
    finally:
        bar.close()
        log.close()
    seconds = time.perf_counter() - t0
    handled = counts["done"] + counts["errors"]
    return {**counts, "skipped": len(mine) - len(todo), "seconds": seconds,
            "clips_per_s": handled / seconds if seconds > 0 else float("nan"),
            "results": str(out / results_name(shard))}


# -- command line ----------------------------------------------------------------------------------
def cmd_explain_corpus(args: argparse.Namespace) -> int:
    from .cli import _explainer

    files = read_manifest(args.manifest)
    prompts = read_prompts(args.prompts)
    if args.shard:
        shard = parse_shard(args.shard)
    else:  # under torchrun every rank takes its own shard
        rank, world, local = env_world()
        shard = (rank, world)
        if world > 1 and args.device == "cuda":
            args.device = f"cuda:{local}"
    ex = _explainer(args, need_decoder=True)
    summary = explain_corpus(ex, files, prompts, args.out, batch_size=args.batch_size, wav=args.wav,
                             shard=shard, progress=not args.quiet)
    print(f"{summary['done']} explained, {summary['errors']} errors, {summary['skipped']} already done "
          f"({summary['clips_per_s']:.2f} clips/s) → {summary['results']}")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    from .cli import _add_model_args

    p = sub.add_parser("explain-corpus", help="explain many files: batched, sharded (--shard or torchrun), "
                                              "resumable; one JSONL line per file")
    p.add_argument("--manifest", required=True, help="folder of audio files, or CSV with a path column / list")
    p.add_argument("--prompts", required=True, help="text file with one prompt per line")
    p.add_argument("--out", required=True, help="output folder (results*.jsonl, masks/, wavs/)")
    _add_model_args(p)
    p.add_argument("--shard", help="I/N: explain every N-th file from the I-th (default: torchrun's RANK/"
                                   "WORLD_SIZE, else all)")
    p.add_argument("--batch-size", type=int, default=16, help="windows per model batch (default: 16)")
    p.add_argument("--wav", action="store_true", help="also write listenable explanation wavs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_explain_corpus)


__all__ = ["explain_corpus", "explain_batch", "read_manifest", "read_prompts", "parse_shard", "shard_files",
           "read_results", "register_cli"]
