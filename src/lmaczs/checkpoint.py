"""Decoder weights and training state on disk: safetensors + JSON, written atomically (temp file, then rename).

A run directory holds:
    decoder.safetensors + decoder.json   the decoder for inference (config, backend facts, training summary)
    checkpoint.safetensors               everything to resume: decoder, optimizer state, step, RNG states
    log.jsonl                            one line of losses per logged step / validation
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Collection

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .decoder import DecoderConfig, MaskDecoder
from .errors import CheckpointError, OutputError, first_line

DECODER_WEIGHTS = "decoder.safetensors"
DECODER_META = "decoder.json"
CHECKPOINT = "checkpoint.safetensors"


TEMP_SUFFIX = ".tmp"  # atomic_write's temp files are ".<name>.<random>.tmp" beside their target


def _write_failed(path: Path, exc: Exception) -> OutputError:
    return OutputError(f"cannot write {path}: {getattr(exc, 'strerror', None) or first_line(exc)}")


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a half-written file.

    An :class:`OSError` on the way (read-only file system, disk full, a file where a folder should be) removes
    the temp file and becomes a one-line :class:`OutputError`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise _write_failed(path, exc) from None
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; outputs get the usual permissions
        os.replace(tmp, path)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OutputError):
            raise
        if isinstance(exc, OSError) or type(exc).__module__.startswith("soundfile"):  # libsndfile write errors
            raise _write_failed(path, exc) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temps(folder: Path, targets: Collection[str] | None = None) -> list[Path]:
    """Delete the temp files an interrupted :func:`atomic_write` left in ``folder`` (all of them, or only those
    of the file names in ``targets``). Call it only where no other job writes those files (e.g. under a
    :class:`lmaczs.locking.DirLock`). Returns the removed paths."""
    removed = []
    for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        target = tmp.name[1:].rsplit(".", 2)[0]  # ".<name>.<random>.tmp" -> "<name>"
        if (targets is None or target in targets) and tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save_decoder(run_dir: Path, decoder: MaskDecoder, meta: dict, dtype: torch.dtype = torch.float32) -> None:
    """Write ``decoder.safetensors`` + ``decoder.json`` (``meta`` holds backend facts and training info)."""
    run_dir = Path(run_dir)
    tensors = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
               for k, v in decoder.state_dict().items()}
    atomic_write(run_dir / DECODER_WEIGHTS, lambda tmp: save_file(tensors, tmp))
    body = {"format": "lmaczs-decoder/1", "decoder": decoder.config.to_dict(), **meta}
    atomic_write_text(run_dir / DECODER_META, json.dumps(body, indent=2))


def read_decoder_meta(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    meta_path = run_dir / DECODER_META
    if not meta_path.is_file():
        raise CheckpointError(f"no decoder in {run_dir}: {DECODER_META} is missing (train one with lmac-zs train)")
    try:
        meta = json.loads(meta_path.read_text())
        DecoderConfig.from_dict(meta["decoder"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{meta_path} is corrupt: {exc}") from None
    return meta


def load_decoder(run_dir: Path) -> tuple[MaskDecoder, dict]:
    """Rebuild a decoder from a run directory. Returns ``(decoder in eval mode, meta)``."""
    run_dir = Path(run_dir)
    meta = read_decoder_meta(run_dir)
    decoder = MaskDecoder(DecoderConfig.from_dict(meta["decoder"]))
    try:
        state = load_file(str(run_dir / DECODER_WEIGHTS))
        decoder.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except (OSError, SafetensorError, RuntimeError) as exc:
        raise CheckpointError(f"cannot load {run_dir / DECODER_WEIGHTS}: {first_line(exc)}") from None
    return decoder.eval(), meta


def save_training_state(run_dir: Path, decoder: MaskDecoder, optimizer: torch.optim.Optimizer,
                        meta: dict) -> None:
    """Write ``checkpoint.safetensors``: decoder, optimizer tensors, torch RNG; ``meta`` as JSON metadata."""
    tensors: dict[str, torch.Tensor] = {f"decoder.{k}": v.detach().cpu().contiguous()
                                        for k, v in decoder.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, state in opt["state"].items():
        for key, value in state.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"optim.{idx}.{key}"] = t.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.random.get_rng_state()
    info = {"meta": json.dumps(meta), "param_groups": json.dumps(opt["param_groups"]),
            "decoder_config": json.dumps(decoder.config.to_dict())}
    atomic_write(Path(run_dir) / CHECKPOINT, lambda tmp: save_file(tensors, tmp, metadata=info))


def load_training_state(run_dir: Path, decoder: MaskDecoder, optimizer: torch.optim.Optimizer) -> dict:
    """Restore decoder, optimizer and torch RNG from ``checkpoint.safetensors``. Returns the saved meta."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"cannot resume: {path} does not exist")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            info = fh.metadata()
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        saved_cfg = json.loads(info["decoder_config"])
    except (OSError, SafetensorError, KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot resume from {path}: {first_line(exc)}") from None
    if DecoderConfig.from_dict(saved_cfg) != decoder.config:
        raise CheckpointError(f"cannot resume from {path}: it holds a decoder of another shape/backend")
    decoder.load_state_dict({k[len("decoder."):]: v for k, v in tensors.items() if k.startswith("decoder.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(info["param_groups"])})
    torch.random.set_rng_state(tensors["rng.torch"])
    return json.loads(info["meta"])
