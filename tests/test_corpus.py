"""`lmac-zs explain-corpus`: one JSONL line per file, errors recorded, resumable, shardable, batched = unbatched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import TINY_WIDTHS, esc50_paths
from lmaczs.checkpoint import save_decoder
from lmaczs.cli import main
from lmaczs.clap import load_backend
from lmaczs.corpus import _Loaded, explain_batch, parse_shard, read_manifest, read_results
from lmaczs.decoder import build_decoder
from lmaczs.errors import DataError
from lmaczs.explain import Explainer

PROMPTS = ["a dog barking", "rain falling", "a baby crying", "birds chirping", "a clock ticking"]
N_GOOD = 6


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """Six real ESC-50 clips and one corrupt wav in a CSV manifest, a prompts file and a tiny decoder."""
    root = tmp_path_factory.mktemp("corpus")
    good = esc50_paths(N_GOOD)
    bad = root / "corrupt.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    manifest = root / "files.csv"
    rows = [str(p) for p in good[:3]] + [bad.name] + [str(p) for p in good[3:]]  # bad: relative to the CSV
    manifest.write_text("path,note\n" + "".join(f"{r},x\n" for r in rows))
    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n\n")
    backend = load_backend("tiny")
    torch.manual_seed(3)
    decoder = build_decoder(backend, widths=TINY_WIDTHS)
    with torch.no_grad():  # a random decoder whose masks vary across time and frequency
        for p in decoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_decoder(root / "decoder", decoder, {"backend": backend.describe()})
    return {"root": root, "manifest": manifest, "prompts": prompts, "good": good, "bad": bad.resolve(),
            "decoder": root / "decoder"}


def run_cli(corpus: dict, out: Path, *extra: str) -> None:
    argv = ["explain-corpus", "--manifest", str(corpus["manifest"]), "--prompts", str(corpus["prompts"]),
            "--out", str(out), "--clap", "tiny", "--decoder", str(corpus["decoder"]), "--quiet", *extra]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def full_run(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus_out") / "all"
    run_cli(corpus, out, "--batch-size", "8", "--wav")  # 5 windows per clip: batches mix files
    return out


def test_manifest_and_shard_parsing(corpus, tmp_path):
    files = read_manifest(corpus["manifest"])
    assert len(files) == N_GOOD + 1 and files[3] == corpus["bad"]
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(map(str, files + files[:2])) + "\n")
    assert read_manifest(lst) == files  # plain list, duplicates dropped
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1-2"):
        with pytest.raises(DataError):
            parse_shard(bad)


def test_one_line_per_file_and_outputs(corpus, full_run):
    lines = (full_run / "results.jsonl").read_text().splitlines()
    recs = [json.loads(ln) for ln in lines]
    assert len(recs) == N_GOOD + 1
    assert {r["path"] for r in recs} == {str(p.resolve()) for p in corpus["good"]} | {str(corpus["bad"])}
    errors = [r for r in recs if "error" in r]
    assert len(errors) == 1 and errors[0]["path"] == str(corpus["bad"]) and "cannot read" in errors[0]["error"]
    info = json.loads((full_run / "run.json").read_text())
    assert info["prompts"] == PROMPTS and info["backend"]["spec"] == "tiny:0"
    for r in recs:
        if "error" in r:
            continue
        assert set(r["scores"]) == set(PROMPTS) and sum(r["scores"].values()) == pytest.approx(1, abs=1e-5)
        assert r["prediction"] == max(r["scores"], key=r["scores"].get)
        assert r["windows"] == 5 and r["seconds"] == pytest.approx(5.0, abs=1e-3)
        with np.load(full_run / r["outputs"]["mask"]) as z:
            mask, ws = z["mask"], z["window_scores"]
        assert mask.dtype == np.float16 and mask.shape[1] == 129 and ws.shape == (5, len(PROMPTS))
        m = mask.astype(np.float32)
        assert r["mask"]["mean"] == pytest.approx(m.mean(), abs=1e-3)
        assert r["mask"]["max"] == pytest.approx(m.max(), abs=1e-3)
        assert r["mask"]["above_half"] == pytest.approx((m > 0.5).mean(), abs=0.01)
        assert 0 < r["mask"]["above_half"] < 1  # a mask with structure, not a constant
        audio, sr = sf.read(full_run / r["outputs"]["wav"])
        assert sr == 8000 and len(audio) == 40000


def test_restart_writes_nothing_new_and_repairs_a_cut_line(corpus, full_run, tmp_path):
    import shutil

    out = tmp_path / "again"
    shutil.copytree(full_run, out)
    before = (out / "results.jsonl").read_bytes()
    run_cli(corpus, out)
    assert (out / "results.jsonl").read_bytes() == before
    # a kill in the middle of the last line: the restart drops the fragment and redoes that file only
    lines = before.decode().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(lines[:-1]) + lines[-1][:40])
    run_cli(corpus, out)
    after = (out / "results.jsonl").read_text().splitlines()
    assert len(after) == N_GOOD + 1
    assert [json.loads(x)["path"] for x in after] == [json.loads(x)["path"] for x in lines]


def test_shards_partition_the_files(corpus, tmp_path, monkeypatch):
    out = tmp_path / "sharded"
    run_cli(corpus, out, "--shard", "0/2")
    monkeypatch.setenv("RANK", "1")  # as torchrun sets them: the shard comes from the environment
    monkeypatch.setenv("WORLD_SIZE", "2")
    run_cli(corpus, out)
    parts = [[json.loads(x)["path"] for x in (out / f"results.{i}-of-2.jsonl").read_text().splitlines()]
             for i in (0, 1)]
    assert parts[0] and parts[1] and not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(map(str, read_manifest(corpus["manifest"])))
    assert len(read_results(out)) == N_GOOD + 1
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    before = {p.name: p.read_bytes() for p in out.glob("results*.jsonl")}
    run_cli(corpus, out)  # unsharded restart: every file already has a line
    assert {p.name: p.read_bytes() for p in out.glob("results*.jsonl")} == before


def test_batched_equals_unbatched(corpus, full_run):
    ex = Explainer.load("tiny", corpus["decoder"])
    recs = {r["path"]: r for r in read_results(full_run)}
    loaded = []
    for p in corpus["good"]:
        wave, wins, starts, _ = ex._windows(p, None)
        loaded.append(_Loaded(p.resolve(), wave, wins, starts))
    batched = explain_batch(ex, loaded, ex.clap.embed_text(PROMPTS), PROMPTS)
    for f, b in zip(loaded, batched):
        one = ex.explain(f.path, PROMPTS)
        assert b.prediction == one.prediction
        np.testing.assert_allclose(list(b.scores.values()), list(one.scores.values()), rtol=0, atol=1e-5)
        np.testing.assert_allclose(b.window_scores, one.window_scores, rtol=0, atol=1e-5)
        np.testing.assert_allclose(b.mask, one.mask, rtol=0, atol=1e-5)
        np.testing.assert_allclose(b.audio, one.audio, rtol=0, atol=1e-5)
        # and the CLI's batches of 8 windows (files mixed) wrote the same scores and masks
        rec = recs[str(f.path)]
        assert rec["prediction"] == one.prediction
        np.testing.assert_allclose([rec["scores"][p] for p in PROMPTS], list(one.scores.values()), atol=1e-5)
        with np.load(full_run / rec["outputs"]["mask"]) as z:
            np.testing.assert_allclose(z["mask"].astype(np.float32), one.mask, rtol=0, atol=1e-3)
