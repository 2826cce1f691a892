"""Cheap checks that run before anything expensive (a model takes 13–25 s to load): option values, devices,
output locations, text files, ports. Each failure is one :class:`~lmaczs.errors.LmacError` line.

:func:`check_cli_args` is what ``lmac-zs`` runs on the parsed arguments of every command before the command.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import socket
from collections import Counter
from pathlib import Path
from typing import Sequence

from .errors import ConfigError, DataError, LmacError, OutputError, first_line

DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


# -- numbers -----------------------------------------------------------------------------------------------
def check_int(name: str, value: object, minimum: int = 1, maximum: int | None = None) -> None:
    """``value`` is ``None`` or an integer in ``[minimum, maximum]``."""
    if value is None:
        return
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    if not ok or (maximum is not None and value > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        raise ConfigError(f"{name} must be an integer {bound}, got {value!r}")


def check_float(name: str, value: object, minimum: float | None = None, maximum: float | None = None,
                above: bool = False, below: bool = False) -> None:
    """``value`` is ``None`` or a finite number within the bounds (``above``/``below``: the bound is excluded)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    low_bad = minimum is not None and (value <= minimum if above else value < minimum)
    high_bad = maximum is not None and (value >= maximum if below else value > maximum)
    if low_bad or high_bad:
        parts = []
        if minimum is not None:
            parts.append(f"{'above' if above else 'at least'} {minimum:g}")
        if maximum is not None:
            parts.append(f"{'below' if below else 'at most'} {maximum:g}")
        raise ConfigError(f"{name} must be {' and '.join(parts)}, got {value:g}")


# -- devices -----------------------------------------------------------------------------------------------
def check_device(device: object) -> "torch.device":  # noqa: F821 (torch is imported lazily)
    """A torch device that exists on this machine (``None``: cpu), else a :class:`ConfigError`."""
    import torch

    if device is None:
        return torch.device("cpu")
    try:
        dev = device if isinstance(device, torch.device) else torch.device(str(device))
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"unknown device {str(device)!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type not in DEVICE_TYPES:
        raise ConfigError(f"device {str(device)!r} is not supported; use cpu, cuda, cuda:N or mps")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ConfigError(f"device {str(device)!r} is not available ({why}); use cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"device {str(device)!r} does not exist: this machine has {count} CUDA GPU(s), "
                              f"cuda:0 to cuda:{count - 1}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {str(device)!r} is not available on this machine; use cpu")
    elif dev.type == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        raise ConfigError(f"device {str(device)!r} is not available on this machine; use cpu")
    return dev


# -- output locations --------------------------------------------------------------------------------------
def _existing_ancestor(path: Path, label: str) -> Path:
    for q in (path, *path.parents):
        try:
            if q.exists():
                return q
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                long = max(q.parts, key=lambda part: len(os.fsencode(part)))
                raise OutputError(f"{label}: the name {long[:40]!r}… is longer than the file system allows"
                                  ) from None
            raise
        if q.is_symlink():
            raise OutputError(f"{label} {path}: {q} is a broken symbolic link")
    return Path(".")


def _check_writable_folder(path: Path, label: str) -> None:
    """``path`` is a folder we may write into, or one that can be created."""
    try:
        anchor = _existing_ancestor(path, label)
        if anchor == path and not anchor.is_dir():
            raise OutputError(f"{label} {path} is a file, not a folder; give a folder (it is created if missing)")
        if not anchor.is_dir():
            raise OutputError(f"{label} {path} cannot be created: {anchor} is a file, not a folder")
        if not os.access(anchor, os.W_OK | os.X_OK):
            raise OutputError(f"{label} {path}: cannot write into {anchor} (read-only or no permission)")
        limit = os.pathconf(anchor, "PC_NAME_MAX")
        new_parts = path.parts[len(anchor.parts):]
        long = [p for p in new_parts if len(os.fsencode(p)) > limit]
        if long:
            raise OutputError(f"{label}: the name {long[0][:40]!r}… is longer than the file system allows "
                              f"({limit} bytes)")
    except LmacError:
        raise
    except (OSError, ValueError) as exc:
        raise OutputError(f"{label} {path} cannot be used: {getattr(exc, 'strerror', None) or first_line(exc)}"
                          ) from None


def check_output_dir(path: str | os.PathLike, label: str = "--out") -> Path:
    """An output folder: an existing, writable folder or one that can be created (nothing is created here)."""
    p = Path(path)
    if str(path) == "":
        raise OutputError(f"{label} is empty; give a folder")
    _check_writable_folder(p, label)
    return p


def check_output_file(path: str | os.PathLike, label: str = "--report") -> Path:
    """An output file: not a folder, in a writable folder (or one that can be created)."""
    p = Path(path)
    if str(path) == "" or str(path).endswith(os.sep) or p.is_dir():
        raise OutputError(f"{label} {p} is a folder; give a file path such as {p / 'report.html'}")
    try:
        parent_is_file = p.parent.exists() and not p.parent.is_dir()
    except OSError:
        parent_is_file = False
    if parent_is_file:
        raise OutputError(f"{label} {p} cannot be created: {p.parent} is a file, not a folder")
    _check_writable_folder(p.parent, f"{label} {p}: folder")
    return p


def output_stems(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Output name stems for input files, unique even when names repeat.

    Files whose stems repeat get as many parent folder names as tell them apart (``a/x.wav``, ``b/x.wav`` →
    ``a-x``, ``b-x``), then their suffix (``q/y.wav``, ``q/y.flac`` → ``y-wav``, ``y-flac``), then a counter
    (the same file twice → ``x``, ``x-2``).
    """
    full = [Path(os.path.abspath(p)) for p in paths]
    names = [p.stem or "audio" for p in full]
    groups: dict[str, list[int]] = {}
    for k, n in enumerate(names):
        groups.setdefault(n, []).append(k)
    for stem, members in groups.items():
        if len(members) < 2:
            continue
        chains = {k: [q.name for q in full[k].parents if q.name] for k in members}  # nearest folder first
        distinct = len({tuple(c) for c in chains.values()})
        depth = next(d for d in range(max(map(len, chains.values())) + 1)
                     if len({tuple(c[:d]) for c in chains.values()}) == distinct)
        suffixes: dict[tuple, set[str]] = {}
        for k in members:
            suffixes.setdefault(tuple(chains[k]), set()).add(full[k].suffix)
        for k in members:
            name = "-".join([*reversed(chains[k][:depth]), stem])
            if len(suffixes[tuple(chains[k])]) > 1 and full[k].suffix:
                name += "-" + full[k].suffix.lstrip(".")
            names[k] = name
    counts, seen = Counter(names), Counter()
    out = []
    for n in names:
        seen[n] += 1
        out.append(n if counts[n] == 1 or seen[n] == 1 else f"{n}-{seen[n]}")
    return out


# -- input files -------------------------------------------------------------------------------------------
def read_text_file(path: str | os.PathLike, what: str, error: type[LmacError] = DataError) -> str:
    """The text of a UTF-8 file (a byte-order mark is allowed); a missing, unreadable or non-UTF-8 file is one
    line of ``error``."""
    p = Path(path)
    if not p.is_file():
        raise error(f"{what} not found: {p}" if not p.exists() else f"{what} {p} is not a file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise error(f"cannot read {what} {p}: {exc.strerror or first_line(exc)}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {p} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                    "save it as UTF-8") from None


# -- network -----------------------------------------------------------------------------------------------
def check_port_free(host: str, port: object) -> None:
    """``port`` is a valid TCP port that ``host`` can listen on now (not in use by another server)."""
    check_int("--port", port, minimum=1, maximum=65535)
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"--host {host!r} cannot be resolved: {getattr(exc, 'strerror', None) or exc}") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the web server does
        try:
            sock.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is already in use; stop the other server or pass "
                                  "another --port") from None
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or first_line(exc)}") from None


# -- the command line --------------------------------------------------------------------------------------
def _get(args: argparse.Namespace, name: str) -> object:
    return getattr(args, name, None)


def check_cli_args(args: argparse.Namespace) -> None:
    """Validate a parsed ``lmac-zs`` command line before the command loads anything.

    Devices, positive counts, output folders and report paths of every command; ``serve``'s limits, example
    folder and port. The commands check the rest (prompts, audio, data) themselves, also before loading.
    """
    command = _get(args, "command")
    if _get(args, "device") is not None:
        check_device(args.device)
    for name, flag in (("batch_size", "--batch-size"), ("top_k", "--top-k"), ("limit", "--limit"),
                       ("threads", "--threads"), ("ig_steps", "--ig-steps"),
                       ("smoothgrad_samples", "--smoothgrad-samples"), ("scorecam_channels", "--scorecam-channels"),
                       ("sanity_clips", "--sanity-clips")):
        check_int(flag, _get(args, name))
    if command in ("explain", "explain-corpus", "evaluate") and _get(args, "out") is not None:
        check_output_dir(args.out)
    if command == "export":
        check_output_dir(args.to, "--to")
    if _get(args, "report"):
        check_output_file(args.report, "--report")
    if command == "evaluate":
        check_int("--curve-steps", _get(args, "curve_steps"), minimum=0)
        check_float("--snr-db", _get(args, "snr_db"))
    if command == "serve":
        check_float("--max-upload-mb", _get(args, "max_upload_mb"), minimum=0, above=True)
        check_float("--max-seconds", _get(args, "max_seconds"), minimum=0, above=True)
        examples = _get(args, "examples")
        if examples and not Path(str(examples)).is_dir():
            raise ConfigError(f"--examples {examples}: no such folder (give a folder of example clips)")
        if _get(args, "port") is not None:
            check_port_free(str(_get(args, "host") or "127.0.0.1"), args.port)


__all__ = ["check_int", "check_float", "check_device", "check_output_dir", "check_output_file", "output_stems",
           "read_text_file", "check_port_free", "check_cli_args"]
