#!/usr/bin/env python
"""Convert the aisfx pretrained CNN to ``src/lmaczs/assets/aisfx_backbone.safetensors`` (+ provenance JSON).

Source: PyPI ``aisfx==0.1.2`` (fetch with ``pip download --no-deps aisfx==0.1.2``), file
``aisfx/models/checkpoint.pth``, a torch pickle of ``(state_dict, ds_dict)`` whose ``ds_dict`` holds numpy scalars.
Licence of the weights: CC BY 4.0 (A. B. Ma and A. Lerch, ISMIR 2022).

Steps: verify the sha256 of the checkpoint bytes *before* unpickling; load with ``torch.load(weights_only=True)``
allowing only numpy scalar/dtype globals; keep the EmbeddingNet weights (``embedding_net.*``, renamed to
``blocks.{0..3}.*``; the dataset classifier heads ``fc.*`` are dropped); store fp16 where the embedding of real
and synthetic audio changes by < 1e-3 (relative L2) against fp32 (see PRECISION_PLANS), else fp32. Output written atomically.

Usage: python tools/convert_aisfx.py aisfx-0.1.2-py2.py3-none-any.whl [--out src/lmaczs/assets/aisfx_backbone.safetensors]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

SHA256 = "499ea75909c932a2f94c35fa722fa4fabc5bcb7e84917209cc5f7402627b7eb5"
MEMBER = "aisfx/models/checkpoint.pth"
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "lmaczs" / "assets" / "aisfx_backbone.safetensors"
DATA = ROOT.parent / "shared" / "data" / "esc50"
FP16_TOLERANCE = 1e-3


def read_checkpoint_bytes(source: Path) -> bytes:
    """The checkpoint's bytes from a wheel (zip), an unpacked wheel directory, or the .pth itself."""
    if source.is_dir():
        source = source / MEMBER
    if zipfile.is_zipfile(source) and source.suffix == ".whl":
        with zipfile.ZipFile(source) as whl:
            return whl.read(MEMBER)
    return source.read_bytes()


def numpy_safe_globals() -> list:
    """numpy scalar reconstruction + dtype classes, under the names old pickles use."""
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar
    allowed: list = [(scalar, "numpy.core.multiarray.scalar"), scalar, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dtypes.__all__ if isinstance(getattr(dtypes, n), type)]
    return allowed


def load_verified(data: bytes) -> dict[str, torch.Tensor]:
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        sys.exit(f"error: sha256 mismatch for {MEMBER}: {digest} (expected {SHA256}); refusing to unpickle")
    with torch.serialization.safe_globals(numpy_safe_globals()):
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    state = obj[0] if isinstance(obj, (tuple, list)) else obj
    out = {}
    for key, value in state.items():
        if key.startswith("embedding_net.conv_block"):
            block = int(key[len("embedding_net.conv_block")]) - 1
            out[f"blocks.{block}.{key.split('.', 2)[2]}"] = value.contiguous()
    if len(out) != 4 * 12:
        sys.exit(f"error: expected 48 EmbeddingNet tensors, found {len(out)}")
    return out


def probe_inputs() -> torch.Tensor:
    """Model inputs ``(B, 216, 96)`` from real clips where available, plus seeded noise."""
    sys.path.insert(0, str(ROOT / "src"))
    from lmaczs.audio import load_audio, peak_normalize
    from lmaczs.clap.aisfx import aisfx_front_end

    front = aisfx_front_end()
    waves = []
    if DATA.is_dir():
        for name in sorted((DATA / "audio").iterdir())[:6]:
            waves.append(load_audio(name, 44100)[:220500])
    gen = torch.Generator().manual_seed(0)
    waves.append(torch.randn(220500, generator=gen))
    waves = [torch.nn.functional.pad(w, (0, 220500 - w.shape[0])) for w in waves]
    return front(peak_normalize(torch.stack(waves))[0])


# Which tensors may be stored as fp16, tried in order; the first whose embedding change is < 1e-3 wins.
# (The first block sees the raw log-mel and is the sensitive one: fp16 there alone moves the embedding ~3e-3.)
PRECISION_PLANS: list[tuple[str, Callable[[str], bool]]] = [
    ("float16", lambda k: True),
    ("float16 except block 1 (float32)", lambda k: not k.startswith("blocks.0.")),
    ("float16 conv weights of blocks 2-4, rest float32", lambda k: ".conv" in k and not k.startswith("blocks.0.")),
    ("float32", lambda k: False),
]


def embedding_change(state: dict[str, torch.Tensor], as_half: Callable[[str], bool]) -> float:
    """Max relative L2 change of the 512-d embedding when the tensors ``as_half`` selects are rounded to fp16."""
    from lmaczs.clap.aisfx import AisfxBackbone

    x = probe_inputs()
    ref, half = AisfxBackbone().eval(), AisfxBackbone().eval()
    ref.load_state_dict(state)
    half.load_state_dict({k: v.half().float() if v.is_floating_point() and as_half(k) else v
                          for k, v in state.items()})
    with torch.no_grad():
        a, b = ref(x), half(x)
    return float(((a - b).norm(dim=1) / a.norm(dim=1)).max())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="aisfx-0.1.2 wheel, unpacked wheel dir, or checkpoint.pth")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    from safetensors.torch import save

    torch.set_num_threads(1)
    state = load_verified(read_checkpoint_bytes(args.source))
    for plan, as_half in PRECISION_PLANS:
        change = embedding_change(state, as_half)
        if change < FP16_TOLERANCE:
            break
    stored = {k: v.half() if v.is_floating_point() and as_half(k) else v for k, v in state.items()}
    provenance = {
        "source": "PyPI aisfx==0.1.2, file aisfx/models/checkpoint.pth (EmbeddingNet of model X-Sequential-CE)",
        "homepage": "https://github.com/alisonbma/aisfx",
        "sha256": SHA256,
        "licence": "CC BY 4.0 (Copyright (c) 2022 A.B. Ma and A. Lerch)",
        "citation": "A. B. Ma and A. Lerch, Representation Learning for the Automatic Indexing of Sound Effects "
                    "Libraries, ISMIR 2022",
        "kept": "embedding_net.conv_block{1..4}.* renamed blocks.{0..3}.*; fc.* (dataset heads) dropped",
        "dtype": plan,
        "max_relative_embedding_change_vs_float32": change,
        "converted_by": "tools/convert_aisfx.py",
    }
    atomic_write_bytes(args.out, save(stored, metadata={"source": "aisfx==0.1.2", "sha256": SHA256}))
    atomic_write_bytes(args.out.with_suffix(".json"), (json.dumps(provenance, indent=2) + "\n").encode())
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, {plan}; "
          f"embedding change vs float32 {change:.2e})")


if __name__ == "__main__":
    main()
