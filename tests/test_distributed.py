"""DDP training (2 gloo processes on CPU) follows the single-process trajectory, and resumes after a kill.

The distributed runs go through the real command line under ``torchrun`` (``python -m torch.distributed.run``);
the single-process references call :func:`lmaczs.train.train` in this process.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import TINY_WIDTHS, esc50_paths
from lmaczs.audio import load_audio
from lmaczs.checkpoint import load_decoder
from lmaczs.clap import load_backend
from lmaczs.decoder import build_decoder
from lmaczs.errors import CheckpointError, DataError
from lmaczs.train import TrainConfig, lzs_step, resolve_group_size, train

STEPS = 6
BATCH = 4
# The paper's L_ZS (baseline "none") for the exact DDP comparisons: a grouped step's gradients equal the split
# steps' to ~7e-8 for both baselines (test_grouped_loss_is_the_mean_over_groups), but over 6 Adam steps at lr 1e-3
# on the tiny model the silence baseline amplifies that float-order noise to ~3e-4 in a few weights (so does
# changing the thread count of one process), beyond the 1e-5 these tests hold the paper's loss to.
COMMON = dict(clap="tiny", batch_size=BATCH, widths=list(TINY_WIDTHS), val_fraction=0.2, lr=1e-3, seed=0,
              log_every=1, checkpoint_every=100, progress=False, baseline="none")


@pytest.fixture(scope="module")
def captions(tmp_path_factory) -> Path:
    """A captions CSV of 12 real ESC-50 clips (12 classes): 9–10 train, 2–3 validation clips."""
    path = tmp_path_factory.mktemp("ddp_data") / "captions.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "caption"])
        for p in esc50_paths(12):
            w.writerow([str(p), f"a recording of class {p.stem.split('-')[-1]}"])
    return path


def torchrun(data: Path, out: Path, *extra: str, wait: bool = True) -> subprocess.Popen | None:
    """``lmac-zs train`` under ``torchrun --nproc_per_node 2`` (gloo, one thread per process)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "lmaczs.cli", "train", "--clap", "tiny", "--data", str(data), "--out", str(out),
           "--batch-size", str(BATCH), "--widths", *map(str, TINY_WIDTHS), "--val-fraction", "0.2",
           "--lr", "1e-3", "--seed", "0", "--baseline", "none", "--quiet", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return None


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "decoder.safetensors"))


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], skip: set[str] = frozenset()) -> float:
    """Largest weight difference, leaving out the parameters named in ``skip``."""
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a if k not in skip)


def _probe(run: Path):
    """The run's decoder and a real probe input (two clips × two captions)."""
    backend = load_backend("tiny")
    decoder, _ = load_decoder(run)
    waves = torch.stack([backend.fit_window(load_audio(p, backend.sample_rate)) for p in esc50_paths(2)])
    x, _ = backend.analyze(waves)
    hidden = backend.encode_spec(x).hidden
    text = backend.embed_text(["a dog", "rain on a roof"])
    return decoder, text, hidden


def masks_of(run: Path) -> torch.Tensor:
    decoder, text, hidden = _probe(run)
    with torch.no_grad():
        return decoder(text, hidden)


def inert_parameters(run: Path) -> set[str]:
    """Names of parameters whose random change leaves the decoder's masks unchanged."""
    decoder, text, hidden = _probe(run)
    found = set()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        ref = decoder(text, hidden)
        for name, p in decoder.named_parameters():
            delta = torch.randn(p.shape, generator=gen)
            p += delta
            if torch.allclose(decoder(text, hidden), ref, rtol=0, atol=1e-6):
                found.add(name)
            p -= delta
    return found


def val_records(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "val" in r]


def single(data: Path, out: Path, resume: bool = False, **kw) -> dict:
    """A one-process run in this process (one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(TrainConfig(data=str(data), out=str(out), **{**COMMON, **kw}), resume=resume)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ddp_run(captions, tmp_path_factory) -> Path:
    """An uninterrupted 2-process run of STEPS steps."""
    out = tmp_path_factory.mktemp("ddp") / "full"
    torchrun(captions, out, "--max-steps", str(STEPS))
    return out


def test_group_size_rules():
    cfg = TrainConfig(clap="tiny", data="x", out="y", batch_size=8)
    assert resolve_group_size(cfg) == 8 and resolve_group_size(cfg, 2) == 4 and resolve_group_size(cfg, 4) == 2
    with pytest.raises(DataError, match="divisible by the number of processes"):
        resolve_group_size(cfg, 3)
    cfg.group_size = 3
    with pytest.raises(DataError, match="must divide"):
        resolve_group_size(cfg)


@pytest.mark.parametrize("baseline", ["none", "silence"])
def test_grouped_loss_is_the_mean_over_groups(tiny_backend, baseline):
    torch.manual_seed(0)
    decoder = build_decoder(tiny_backend, widths=TINY_WIDTHS)
    waves = torch.randn(4, tiny_backend.num_samples)
    text = torch.nn.functional.normalize(torch.randn(4, tiny_backend.embed_dim), dim=-1)
    grouped = lzs_step(tiny_backend, decoder, waves, text, 0.1, 1.0, group_size=2, baseline=baseline)
    parts = [lzs_step(tiny_backend, decoder, waves[k:k + 2], text[k:k + 2], 0.1, 1.0, baseline=baseline)
             for k in (0, 2)]
    for f in ("total", "similarity", "sparsity", "diversity"):
        torch.testing.assert_close(getattr(grouped, f), (getattr(parts[0], f) + getattr(parts[1], f)) / 2)
    whole = lzs_step(tiny_backend, decoder, waves, text, 0.1, 1.0, baseline=baseline)
    assert not torch.allclose(whole.diversity, grouped.diversity)  # 4×4 pairs are another objective


def test_ddp_matches_single_process_with_same_groups(captions, ddp_run, tmp_path):
    ref = tmp_path / "single"
    single(captions, ref, max_steps=STEPS, group_size=BATCH // 2)
    ddp, one = weights(ddp_run), weights(ref)
    init = build_decoder(load_backend("tiny"), widths=TINY_WIDTHS).state_dict()
    assert max_diff(one, {k: v for k, v in init.items() if k in one}) > 1e-3  # training moved the weights
    # Parameters without effect on the mask (a conv bias right before a per-channel GroupNorm) have a zero
    # gradient up to float noise, which Adam normalises into lr-sized steps: compare them through the output.
    skip = inert_parameters(ref)
    assert len(skip) <= 2, skip
    gap = max_diff(ddp, one, skip)
    assert gap < 1e-5
    torch.testing.assert_close(masks_of(ddp_run), masks_of(ref), rtol=0, atol=1e-5)
    # the validation loss, reduced over ranks, is the single-process one
    for a, b in zip(val_records(ddp_run), val_records(ref), strict=True):
        assert a["step"] == b["step"]
        assert a["val"]["total"] == pytest.approx(b["val"]["total"], rel=1e-5)
    meta = json.loads((ddp_run / "decoder.json").read_text())
    assert meta["world_size"] == 2 and meta["group_size"] == BATCH // 2 and meta["step"] == STEPS
    # whole-batch groups are another objective: the match above is not a coincidence
    whole = tmp_path / "whole"
    single(captions, whole, max_steps=STEPS)
    assert max_diff(weights(whole), one, skip) > 100 * max(gap, 1e-7)


def test_ddp_resume_after_kill_matches_uninterrupted(captions, ddp_run, tmp_path):
    out = tmp_path / "killed"
    proc = torchrun(captions, out, "--max-steps", str(STEPS), "--checkpoint-every", "1", wait=False)
    ckpt = out / "checkpoint.safetensors"
    deadline = time.monotonic() + 240
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks, wherever they are
    proc.wait(timeout=60)
    assert ckpt.exists(), proc.stdout.read().decode()[-3000:]
    with safe_open(str(ckpt), framework="pt") as fh:  # decoder.json may not be written yet
        killed_at = json.loads(fh.metadata()["meta"])["step"]
    assert killed_at < STEPS, "the run finished before it was killed; nothing was resumed"
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    torchrun(captions, out, "--max-steps", str(STEPS), "--resume")
    assert json.loads((out / "decoder.json").read_text())["step"] == STEPS
    assert max_diff(weights(out), weights(ddp_run)) < 1e-6
    # one process may continue a 2-rank run with the same groups, and refuses other groups
    with pytest.raises(CheckpointError, match="groups of 2 clips"):
        single(captions, copy, resume=True, max_steps=STEPS)
    single(captions, copy, resume=True, max_steps=STEPS, group_size=BATCH // 2)
    assert max_diff(weights(copy), weights(ddp_run), inert_parameters(ddp_run)) < 1e-5
    torch.testing.assert_close(masks_of(copy), masks_of(ddp_run), rtol=0, atol=1e-5)


def test_silence_baseline_step_uses_the_empty_input(tiny_backend):
    """lzs_step(baseline="silence") == lzs_loss with b_i = t_iᵀ f_audio(0), computed here by hand."""
    from lmaczs.loss import lzs_loss

    torch.manual_seed(0)
    decoder = build_decoder(tiny_backend, widths=TINY_WIDTHS)
    waves = torch.randn(2, tiny_backend.num_samples)
    text = torch.nn.functional.normalize(torch.randn(2, tiny_backend.embed_dim), dim=-1)
    got = lzs_step(tiny_backend, decoder, waves, text, 0.1, 1.0, baseline="silence")
    with torch.no_grad():
        x, _ = tiny_backend.analyze(tiny_backend.prepare(waves))
        clean = tiny_backend.encode_spec(x)
        silent = text @ tiny_backend.encode_spec(torch.zeros_like(x[:1])).embedding[0]
        masks = torch.stack([decoder(text[i:i + 1].expand(2, -1), clean.hidden) for i in range(2)])  # (i, j, T, F)
        masked = tiny_backend.encode_spec((masks * x).flatten(0, 1)).embedding.view(2, 2, -1)
        want = lzs_loss(text, clean.embedding, masked, masks, 0.1, 1.0, baseline=silent)
        other = lzs_loss(text, clean.embedding, masked, masks, 0.1, 1.0, baseline=silent + 0.5)
    torch.testing.assert_close(got.total.detach(), want.total, atol=1e-5, rtol=0)
    assert abs(got.similarity.item() - other.similarity.item()) > 1e-3  # so the match above is not trivial
    with pytest.raises(DataError, match="unknown L_ZS baseline"):
        lzs_step(tiny_backend, decoder, waves, text, 0.1, 1.0, baseline="noise")
