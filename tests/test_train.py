"""Training on real clips: validation loss falls, exact resume, refusals, safetensors + JSON files written
atomically; training data from a captions CSV or an ESC-50 folder."""

import csv
import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import ESC50_DIR, TINY_WIDTHS, esc50_paths
from lmaczs import checkpoint as ckpt
from lmaczs import datasets
from lmaczs.checkpoint import load_decoder, save_decoder, save_training_state
from lmaczs.data import esc50_items, load_items, load_windows, read_captions_csv, split_by_group
from lmaczs.errors import CheckpointError, DataError
from lmaczs.train import TrainConfig, train

RUN_FILES = {"decoder.safetensors", "decoder.json", "checkpoint.safetensors", "log.jsonl"}


def _category(path: Path) -> str:
    target = int(path.stem.rsplit("-", 1)[1])
    with (ESC50_DIR / "meta" / "esc50.csv").open(newline="") as fh:
        return next(r["category"] for r in csv.DictReader(fh) if int(r["target"]) == target)


@pytest.fixture(scope="module")
def captions_csv(tmp_path_factory, esc50_dir) -> Path:
    """A captions CSV over 12 real clips: paths relative to the CSV's folder (one absolute), 2 captions each."""
    folder = tmp_path_factory.mktemp("captions")
    rows = []
    for k, path in enumerate(esc50_paths(12)):
        name = str(path) if k == 0 else os.path.relpath(path, folder)
        for caption in datasets.captions_for(_category(path))[:2]:
            rows.append({"path": name, "caption": caption})
    out = folder / "captions.csv"
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "caption"])
        writer.writeheader()
        writer.writerows(rows)
    return out


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(clap="tiny", data=str(data), out=str(out), widths=list(TINY_WIDTHS), batch_size=2, lr=1e-3,
                val_fraction=0.2, checkpoint_every=100, log_every=1, max_steps=6, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def _snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir())}


# -- training behaviour --------------------------------------------------------------------------------------

def test_validation_loss_falls_on_held_out_clips(tiny_run):
    s = tiny_run.summary
    assert s["steps"] == 40
    assert s["val_last"]["total"] < s["val_first"]["total"]
    # the validation clips are held out: no source recording on both sides
    items = load_items(tiny_run.config.data, splits=tiny_run.config.splits, targets=tiny_run.config.targets)
    train_items, val_items = split_by_group(items, tiny_run.config.val_fraction, tiny_run.config.seed)
    assert val_items and not {i.group for i in train_items} & {i.group for i in val_items}
    log = [json.loads(line) for line in (tiny_run.path / "log.jsonl").read_text().splitlines()]
    vals = [r for r in log if "val" in r]
    assert vals[0]["step"] == 0 and vals[-1]["step"] == 40
    assert vals[0]["val"] == pytest.approx(s["val_first"]) and vals[-1]["val"] == pytest.approx(s["val_last"])


def test_run_files_are_safetensors_and_json(tiny_run):
    run = tiny_run.path
    assert {p.name for p in run.iterdir()} == RUN_FILES  # nothing else: no pickle, no temp file
    for name in ("decoder.safetensors", "checkpoint.safetensors"):
        raw = (run / name).read_bytes()
        header_len = int.from_bytes(raw[:8], "little")
        assert raw[8:9] == b"{" and json.loads(raw[8:8 + header_len])  # safetensors: length + JSON header
    weights = load_file(str(run / "decoder.safetensors"))
    assert weights and all(v.dtype == torch.float32 for v in weights.values())
    meta = json.loads((run / "decoder.json").read_text())
    assert meta["format"] == "lmaczs-decoder/1" and meta["step"] == 40
    assert meta["backend"]["spec"] == "tiny:0" and meta["backend"]["mask_shape"] == [126, 129]
    assert meta["decoder"]["widths"] == TINY_WIDTHS
    with safe_open(str(run / "checkpoint.safetensors"), framework="pt") as fh:
        info = fh.metadata()
        assert json.loads(info["meta"])["step"] == 40
        assert any(k.startswith("optim.") for k in fh.keys()) and "rng.torch" in fh.keys()
    decoder, _ = load_decoder(run)
    for k, v in decoder.state_dict().items():
        torch.testing.assert_close(v, weights[k])


@pytest.fixture(scope="module")
def reference_run(captions_csv, tmp_path_factory) -> tuple[Path, dict]:
    """6 uninterrupted steps on the captions CSV (2 clips per batch: an epoch boundary after step 5)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    return out, train(_cfg(captions_csv, out))


def _assert_same_weights(run_a: Path, run_b: Path) -> None:
    a, meta_a = load_decoder(run_a)
    b, meta_b = load_decoder(run_b)
    assert meta_a["step"] == meta_b["step"]
    sb = b.state_dict()
    for name, va in a.state_dict().items():
        torch.testing.assert_close(va, sb[name], atol=1e-6, rtol=0, msg=name)


def test_resume_is_exact(captions_csv, reference_run, tmp_path):
    """6 steps in one run == 3 steps, then --resume to 6 (crossing an epoch boundary on the way)."""
    ref_dir, ref = reference_run
    out = tmp_path / "split"
    assert train(_cfg(captions_csv, out, max_steps=3))["steps"] == 3
    at_three = load_decoder(out)[0].state_dict()
    resumed = train(_cfg(captions_csv, out), resume=True)
    assert resumed["steps"] == ref["steps"] == 6
    _assert_same_weights(ref_dir, out)
    assert resumed["train"] == pytest.approx(ref["train"], abs=1e-6)
    assert resumed["val_last"] == pytest.approx(ref["val_last"], abs=1e-6)
    # the last 3 steps did move the weights: the equality above is not trivially true
    final = load_decoder(out)[0].state_dict()
    assert max((final[k] - v).abs().max().item() for k, v in at_three.items()) > 1e-4


def test_resume_refusals(captions_csv, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(CheckpointError, match="resume"):
        train(_cfg(captions_csv, out), resume=True)  # nothing to resume yet
    train(_cfg(captions_csv, out, max_steps=2))
    before = _snapshot(out)
    with pytest.raises(CheckpointError, match="lr") as e:
        train(_cfg(captions_csv, out, lr=5e-4), resume=True)
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError):
        train(_cfg(captions_csv, out, widths=[8, 8, 8, 8]), resume=True)
    with pytest.raises(CheckpointError, match="--resume"):
        train(_cfg(captions_csv, out))  # would overwrite the run
    assert _snapshot(out) == before


def test_kill_during_save_keeps_previous_checkpoint(captions_csv, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(_cfg(captions_csv, out, max_steps=2))
    before = _snapshot(out)
    real_save = ckpt.save_file

    def killed_half_way(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        data = Path(filename).read_bytes()
        Path(filename).write_bytes(data[: len(data) // 2])  # half the file is on disk...
        raise KeyboardInterrupt  # ...when the process is stopped

    monkeypatch.setattr(ckpt, "save_file", killed_half_way)
    # directly, and through a training run whose checkpoint at step 4 (and the save on interrupt) is killed
    decoder, meta = load_decoder(out)
    with pytest.raises(KeyboardInterrupt):
        save_decoder(out, decoder, meta)
    with pytest.raises(KeyboardInterrupt):
        save_training_state(out, decoder, torch.optim.Adam(decoder.parameters()), meta)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(captions_csv, out, max_steps=4), resume=True)
    after = _snapshot(out)
    assert set(after) == set(before)  # no temp files left behind
    for name in ("decoder.safetensors", "decoder.json", "checkpoint.safetensors"):
        assert after[name] == before[name], f"{name} changed"
    monkeypatch.setattr(ckpt, "save_file", real_save)
    assert load_decoder(out)[1]["step"] == 2
    assert train(_cfg(captions_csv, out, max_steps=4), resume=True)["steps"] == 4


def test_interrupt_saves_a_resumable_checkpoint(captions_csv, reference_run, tmp_path, monkeypatch):
    """Ctrl-C in the middle of training writes a checkpoint at the current step; --resume finishes the run
    exactly like an uninterrupted one."""
    import lmaczs.train as train_mod

    out = tmp_path / "run"
    real_step = train_mod.lzs_step
    calls = {"n": 0}

    def interrupt_at_fourth(*args, **kw):
        if torch.is_grad_enabled():  # a training step, not a validation pass
            calls["n"] += 1
            if calls["n"] == 4:
                raise KeyboardInterrupt
        return real_step(*args, **kw)

    monkeypatch.setattr(train_mod, "lzs_step", interrupt_at_fourth)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(captions_csv, out))
    monkeypatch.setattr(train_mod, "lzs_step", real_step)
    assert load_decoder(out)[1]["step"] == 3
    assert train(_cfg(captions_csv, out), resume=True)["steps"] == 6
    _assert_same_weights(reference_run[0], out)


# -- data sources -------------------------------------------------------------------------------------------

def test_captions_csv(captions_csv):
    items = read_captions_csv(captions_csv)
    assert len(items) == 12
    assert all(it.path.is_file() and len(it.captions) == 2 for it in items)
    assert len({it.group for it in items}) == 12
    assert load_items(captions_csv) == items
    waves = load_windows(items[:3], _tiny(), progress=False)
    assert waves.shape == (3, 16000)


def _tiny():
    from lmaczs.clap import load_backend

    return load_backend("tiny")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_bad_captions_csv(tmp_path, captions_csv):
    clip = esc50_paths(1)[0]
    cases = {
        "not found": tmp_path / "missing.csv",
        "header": _write(tmp_path / "header.csv", "file,text\na.wav,a dog\n"),
        "lists no": _write(tmp_path / "empty.csv", "path,caption\n,\nx.wav,\n"),
    }
    for word, path in cases.items():
        with pytest.raises(DataError, match=word) as e:
            load_items(path)
        assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="ESC-50"):
        load_items(captions_csv, folds=[4])  # filters are for ESC-50 folders
    with pytest.raises(DataError):
        load_items(_write(tmp_path / "notes.txt", "path,caption\n"))
    # rows naming missing or corrupt audio fail when the audio is read, as DataError
    (tmp_path / "junk.wav").write_bytes(np.random.default_rng(0).bytes(2048))
    for name in ("nowhere.wav", "junk.wav"):
        csv_path = _write(tmp_path / f"{name}.csv", f"path,caption\n{clip},a cow\n{name},a dog\n")
        with pytest.raises(DataError, match=name) as e:
            load_windows(load_items(csv_path), _tiny(), progress=False)
        assert "\n" not in str(e.value)


def test_esc50_folder_filters(esc50_dir):
    with (esc50_dir / "meta" / "esc50.csv").open(newline="") as fh:
        meta = list(csv.DictReader(fh))
    with (esc50_dir / "meta" / "splits.csv").open(newline="") as fh:
        split_of = {r["filename"]: r["split"] for r in csv.DictReader(fh)}
    assert len(esc50_items(esc50_dir)) == len(meta) == 728
    b_odd = esc50_items(esc50_dir, splits=["B"], targets="odd")
    want = [r for r in meta if split_of[r["filename"]] == "B" and int(r["target"]) % 2 == 1]
    assert len(b_odd) == len(want) > 0
    assert sorted(it.path.stem for it in b_odd) == sorted(Path(r["filename"]).stem for r in want)
    by_stem = {Path(r["filename"]).stem: r for r in meta}
    for it in b_odd:
        row = by_stem[it.path.stem]
        assert it.captions == tuple(datasets.captions_for(row["category"])) and it.group == row["src_file"]
    assert len(esc50_items(esc50_dir, folds=[4])) == 400
    assert len(esc50_items(esc50_dir, folds=[1, 2, 3, 5])) == 14 + 314
    a_even = esc50_items(esc50_dir, splits=["A"], targets="even")
    assert a_even and all(int(by_stem[it.path.stem]["target"]) % 2 == 0 for it in a_even)
    with pytest.raises(DataError, match="no clips"):
        esc50_items(esc50_dir, folds=[9])
    with pytest.raises(DataError):
        load_items(esc50_dir, targets="prime")


def test_split_by_group_is_deterministic_and_disjoint(esc50_dir):
    items = esc50_items(esc50_dir, folds=[4])
    train_a, val_a = split_by_group(items, 0.2, seed=3)
    train_b, val_b = split_by_group(items, 0.2, seed=3)
    assert train_a == train_b and val_a == val_b
    assert len(train_a) + len(val_a) == len(items)
    assert not {i.group for i in train_a} & {i.group for i in val_a}
    n_groups = len({i.group for i in items})
    assert len({i.group for i in val_a}) == round(0.2 * n_groups)
    assert split_by_group(items, 0.2, seed=4)[1] != val_a


def test_train_config_fields_survive_in_meta(tiny_run):
    meta = json.loads((tiny_run.path / "decoder.json").read_text())
    saved = meta["train_config"]
    for field in TrainConfig.RESUME_KEYS:
        assert saved[field] == dataclasses.asdict(tiny_run.config)[field]


def test_training_on_too_few_clips(tmp_path):
    clip = esc50_paths(1)[0]
    data = _write(tmp_path / "one.csv", f"path,caption\n{clip},a cow moos\n")
    with pytest.raises(DataError, match="fewer than one batch"):
        train(_cfg(data, tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_copy_of_run_still_loads(tiny_run, tmp_path):
    """A run directory is self-contained (moved or copied, it loads)."""
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run.path, copy)
    decoder, meta = load_decoder(copy)
    assert meta["step"] == 40 and decoder.config.mask_shape == (126, 129)


def test_runs_from_before_the_baseline_option_resume_as_the_papers_loss(captions_csv, tmp_path):
    """A checkpoint whose train_config has no "baseline" (older lmaczs) was trained with the paper's L_ZS."""
    out = tmp_path / "run"
    train(_cfg(captions_csv, out, max_steps=2, baseline="none"))
    path = out / "checkpoint.safetensors"
    with safe_open(str(path), framework="pt") as fh:
        info = fh.metadata()
    meta = json.loads(info["meta"])
    del meta["train_config"]["baseline"]
    from safetensors.torch import save_file
    save_file(load_file(str(path)), str(path), metadata={**info, "meta": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="baseline"):
        train(_cfg(captions_csv, out, max_steps=3), resume=True)  # the default, "silence", differs
    assert train(_cfg(captions_csv, out, max_steps=3, baseline="none"), resume=True)["steps"] == 3


def test_multi_source_training_with_the_out_term_resumes_exactly(captions_csv, tmp_path):
    """--mix, --source-targets, --lambda-out and the hinge similarity keep a run a function of its config:
    3 + 3 steps == 6; source targets without mixtures are refused."""
    from lmaczs.errors import ConfigError
    from lmaczs.mixtures import MixConfig

    kw = dict(mix=MixConfig(p_overlap=0.4, p_splice=0.4, p_silence=0.1).to_dict(), lambda_out=1.0,
              similarity="hinge", source_targets=True, source_residuals=True)
    with pytest.raises(ConfigError, match="--source-targets needs --mix"):
        train(_cfg(captions_csv, tmp_path / "nomix", **{**kw, "mix": None}))
    with pytest.raises(ConfigError, match="--source-residuals needs"):
        train(_cfg(captions_csv, tmp_path / "noout", **{**kw, "lambda_out": 0.0}))
    whole = train(_cfg(captions_csv, tmp_path / "whole", **kw))
    assert whole["train"]["out"] >= 0 and "out" in whole["val_last"]
    train(_cfg(captions_csv, tmp_path / "split", max_steps=3, **kw))
    resumed = train(_cfg(captions_csv, tmp_path / "split", **kw), resume=True)
    _assert_same_weights(tmp_path / "whole", tmp_path / "split")
    assert resumed["train"] == pytest.approx(whole["train"], abs=1e-6)
    with pytest.raises(CheckpointError, match="mix"):
        train(_cfg(captions_csv, tmp_path / "split", max_steps=8, **{**kw, "mix": None,
                                                                    "source_targets": False,
                                                                    "source_residuals": False}), resume=True)


def test_pool_items_carry_classes_and_recordings(esc50_dir):
    from lmaczs.data import load_items

    items = load_items(esc50_dir.parent, pool="esc50-eval")
    assert len(items) == 1627 and {it.class_key for it in items} >= {"esc50:dog", "urbansound8k:drilling"}
    assert all(it.group.startswith(("fs:", "lj:")) and it.captions for it in items)
    part = load_items(esc50_dir.parent, pool="esc50-eval:train")
    assert len(part) < len(items) and set(part) < set(items)
    with pytest.raises(DataError, match="pool"):
        load_items(esc50_dir.parent, pool="esc50-eval", splits=["A"])
