#!/usr/bin/env python
"""Write ``tests/fixtures/aisfx_reference.npz``: reference numbers for the aisfx parity tests.

Run it in a throwaway environment that has librosa (≥ 0.10) and torch, never in the project's venv, with the
unpacked ``aisfx==0.1.2`` wheel (``pip download --no-deps aisfx==0.1.2`` then unzip)::

    python -m venv /tmp/ref && /tmp/ref/bin/pip install librosa soundfile torch
    /tmp/ref/bin/python tools/make_aisfx_fixture.py --aisfx /tmp/aisfx

For two real ESC-50 clips it stores
- ``logmel``: the front end computed by librosa (``feature.melspectrogram`` with n_fft = win = 2048, hop 1024,
  centred, constant padding, power 2, 96 HTK mels 0–22050 Hz, ``norm=1``, then ``log10(1e4·S + 1) / 9.4578``),
  in float64, every 5th frame (``frames``);
- ``embedding`` and ``block_means`` (per-channel means of the four block outputs): the *original* aisfx
  ``EmbeddingNet`` code (its ``cnn2d.py``, imported from the unpacked wheel) with the checkpoint's weights,
  applied to lmaczs's own front-end output, so the backbone test isolates the network.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "esc50" / "audio"
CLIPS = ("4-121532-A-42.flac", "4-149940-A-5.flac")  # siren, cat (split B)
FRAMES = np.arange(0, 216, 5)
SHA256 = "499ea75909c932a2f94c35fa722fa4fabc5bcb7e84917209cc5f7402627b7eb5"


def librosa_logmel(wave: np.ndarray) -> np.ndarray:
    import librosa

    y = wave.astype(np.float64) / np.max(np.abs(wave))
    s = librosa.feature.melspectrogram(y=y, sr=44100, n_fft=2048, hop_length=1024, win_length=2048,
                                       center=True, pad_mode="constant", power=2.0, n_mels=96, fmin=0.0,
                                       fmax=22050.0, htk=True, norm=1.0)
    return (np.log10(s * 1e4 + 1.0) / 9.457798957824707).T  # (T, 96)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--aisfx", type=Path, required=True, help="unpacked aisfx-0.1.2 wheel (has aisfx/models)")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "aisfx_reference.npz")
    args = ap.parse_args()
    models = args.aisfx / "aisfx" / "models"
    data = (models / "checkpoint.pth").read_bytes()
    assert hashlib.sha256(data).hexdigest() == SHA256, "checkpoint sha256 mismatch"
    spec = importlib.util.spec_from_file_location("aisfx_cnn2d", models / "cnn2d.py")
    cnn2d = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cnn2d)  # the original model code, used from the wheel only
    sys.path.insert(0, str(ROOT / "tools"))
    from convert_aisfx import numpy_safe_globals

    with torch.serialization.safe_globals(numpy_safe_globals()):
        weights, ds_dict = torch.load(models / "checkpoint.pth", map_location="cpu", weights_only=True)
    model = cnn2d.CrossNet(cnn2d.EmbeddingNet("max", 3, 1, 64), ds_dict, "cpu")
    model.load_state_dict(weights)
    model.eval()
    net = model.embedding_net

    sys.path.insert(0, str(ROOT / "src"))
    from lmaczs.clap.aisfx import aisfx_front_end

    front = aisfx_front_end()
    waves = [sf.read(str(DATA / c), dtype="float32")[0] for c in CLIPS]
    ref = np.stack([librosa_logmel(w) for w in waves])
    wave_t = torch.from_numpy(np.stack(waves))
    ours = front(wave_t / wave_t.abs().amax(dim=1, keepdim=True))
    print("front end max abs error vs librosa:", float(np.abs(ours.double().numpy() - ref).max()))
    with torch.no_grad():
        emb = model.get_embedding(ours).numpy()
        x = ours.unsqueeze(1)
        means = []
        for k, block in enumerate([net.conv_block1, net.conv_block2, net.conv_block3, net.conv_block4]):
            x = block(x, pool_size=(2, 2) if k < 3 else (1, 1), pool_type="max")
            means.append(x.mean(dim=(2, 3)).numpy())
        emb_librosa = model.get_embedding(torch.from_numpy(ref).float()).numpy()
    print("embedding rel. change librosa vs lmaczs front end:",
          float(np.abs(emb - emb_librosa).max() / np.abs(emb).max()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, clips=np.array(CLIPS), frames=FRAMES, logmel=ref[:, FRAMES].astype(np.float32),
                        embedding=emb, **{f"block_means_{k}": m for k, m in enumerate(means)})
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
