"""Bad inputs end as one-line errors (exit 2 from the CLI), are refused before anything is loaded, and never
lose, double or half-write outputs."""

from __future__ import annotations

import csv
import errno
import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import TINY_WIDTHS
import lmaczs.checkpoint as ckpt
import lmaczs.cli as cli
from lmaczs.audio import MAX_CHANNELS, load_audio, to_mono
from lmaczs.checkpoint import atomic_write, atomic_write_text, save_decoder
from lmaczs.checks import check_device, check_output_dir, check_output_file, output_stems
from lmaczs.cli import build_parser, main
from lmaczs.corpus import explain_corpus, read_manifest, read_prompts, read_results
from lmaczs.decoder import build_decoder
from lmaczs.errors import AudioError, ConfigError, DataError, LmacError, OutputError
from lmaczs.explain import Explainer
from lmaczs.locking import DirLock
from lmaczs.train import TrainConfig, train, truncate_log

PROMPTS = ["a dog barks", "rain falls"]
P_ARGS = [a for p in PROMPTS for a in ("-p", p)]
LATIN1 = "café\nrain\n".encode("latin-1")  # not UTF-8: byte 0xe9


# -- fixtures ---------------------------------------------------------------------------------------------
def _noise(path: Path, seconds: float = 2.5, sr: int = 8000, seed: int = 0, scale: float = 0.1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (scale * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32), sr)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Synthetic clips and bad input files shared by the tests of this module (treat as read-only)."""
    d = tmp_path_factory.mktemp("inputs")
    out = {"clip": _noise(d / "clip.wav"), "a_x": _noise(d / "a" / "x.wav", seed=1),
           "b_x": _noise(d / "b" / "x.wav", seed=2)}
    out["text_mp3"] = d / "text.mp3"
    out["text_mp3"].write_text("this is text, not audio\n" * 20)
    sf.write(d / "near_silent.wav", (1e-30 * np.sin(np.arange(16000))).astype(np.float32), 8000, subtype="FLOAT")
    out["near_silent"] = d / "near_silent.wav"
    out["latin1"] = d / "latin1.txt"
    out["latin1"].write_bytes(LATIN1)
    out["empty_pth"] = d / "empty.pth"
    out["empty_pth"].touch()
    out["a_file"] = d / "a_file.txt"
    out["a_file"].write_text("I am a file\n")
    out["decoder"] = d / "decoder"  # an untrained decoder for tiny:0 (what it explains does not matter here)
    from lmaczs.clap import load_backend

    save_decoder(out["decoder"], build_decoder(load_backend("tiny"), widths=list(TINY_WIDTHS)),
                 {"backend": {"spec": "tiny:0", "domain": "stft"}})
    out["captions"] = d / "captions.csv"
    with out["captions"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "caption"])
        for k in range(6):
            w.writerow([_noise(d / "train" / f"n{k}.wav", seed=10 + k, scale=0.05 * (k + 1)), f"noise number {k}"])
    return out


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a command gets as far as loading a model or reading a decoder."""
    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(cli, "_explainer", refuse)
    monkeypatch.setattr("lmaczs.clap.load_backend", refuse)
    monkeypatch.setattr("lmaczs.train.load_backend", refuse)
    monkeypatch.setattr("lmaczs.checkpoint.load_decoder", refuse)


# -- 1. one-line errors instead of tracebacks; nothing half-written --------------------------------------------
@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_atomic_write_os_errors_are_one_line_and_leave_nothing(tmp_path, err):
    target = tmp_path / "out.json"
    target.write_text("previous")

    def fail(tmp):
        Path(tmp).write_text("half")
        raise OSError(err, os.strerror(err))

    with pytest.raises(OutputError) as e:
        atomic_write(target, fail)
    assert "\n" not in str(e.value) and str(target) in str(e.value) and os.strerror(err) in str(e.value)
    assert isinstance(e.value, OSError) and isinstance(e.value, LmacError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"] and target.read_text() == "previous"


def test_atomic_write_cannot_create_temp(tmp_path, monkeypatch):
    def read_only(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    with monkeypatch.context() as patched:
        patched.setattr(ckpt.tempfile, "mkstemp", read_only)
        with pytest.raises(OutputError, match="Read-only file system"):
            atomic_write_text(tmp_path / "x.json", "{}")
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match="cannot write"):  # a file where the folder should be
        atomic_write_text(tmp_path / "f" / "x.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_cli_disk_full_while_writing(capsys, files, tmp_path, monkeypatch):
    real_replace = os.replace

    def full(src, dst):
        if ".tmp" in str(src):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", full)
    out = tmp_path / "out"
    code, _, err = _run(capsys, "explain", files["clip"], *P_ARGS, "--clap", "tiny", "--decoder", files["decoder"],
                        "--out", out)
    assert "No space left on device" in _one_line_error(code, err)
    assert not out.exists() or list(out.iterdir()) == []  # no temp file, no half-written output


@pytest.mark.parametrize("case", ["out is a file", "out under a file", "out impossible", "report is a folder",
                                  "report under a file", "report impossible"])
def test_cli_bad_output_locations(capsys, files, tmp_path, no_model, case):
    bad = {"out is a file": ["--out", files["a_file"]],
           "out under a file": ["--out", files["a_file"] / "sub"],
           "out impossible": ["--out", "/dev/null/out"],
           "report is a folder": ["--out", tmp_path / "o", "--report", tmp_path],
           "report under a file": ["--out", tmp_path / "o", "--report", files["a_file"] / "r.html"],
           "report impossible": ["--out", tmp_path / "o", "--report", "/dev/null/r.html"]}[case]
    code, out, err = _run(capsys, "explain", files["clip"], *P_ARGS, *bad)
    _one_line_error(code, err)
    assert out == "" and not (tmp_path / "o").exists()


def test_read_only_output_folder(capsys, files, tmp_path, no_model, monkeypatch):
    """A folder we may not write into (a read-only mount; as root, chmod alone does not show it)."""
    import lmaczs.checks as checks

    folder = tmp_path / "ro"
    folder.mkdir()
    monkeypatch.setattr(checks.os, "access", lambda path, mode: Path(path) != folder)
    for flags in (["--out", folder], ["--out", folder / "sub"],
                  ["--out", tmp_path / "o", "--report", folder / "r.html"]):
        code, _, err = _run(capsys, "explain", files["clip"], *P_ARGS, *flags)
        assert "read-only or no permission" in _one_line_error(code, err)


def test_unexpected_os_errors_are_one_line(capsys, files, monkeypatch):
    def denied(args):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/some/file")

    monkeypatch.setattr(cli, "cmd_classify", denied)
    code, _, err = _run(capsys, "classify", files["clip"], *P_ARGS)
    assert "Permission denied" in _one_line_error(code, err) and "/some/file" in err


def test_output_location_checks():
    for path in ("/dev/null", "/dev/null/x"):
        with pytest.raises(OutputError):
            check_output_dir(path)
    with pytest.raises(OutputError, match="longer than the file system allows"):
        check_output_dir(Path("/tmp") / ("x" * 300))
    with pytest.raises(OutputError, match="folder"):
        check_output_file("/tmp")
    assert check_output_file("/tmp/new-folder/report.html") == Path("/tmp/new-folder/report.html")


def test_cli_text_files_not_utf8(capsys, files, tmp_path, no_model):
    code, _, err = _run(capsys, "explain", files["clip"], "--prompts-file", files["latin1"], "--out", tmp_path)
    assert "not UTF-8" in _one_line_error(code, err) and "0xe9" in err
    for args in (["--manifest", files["latin1"], "--prompts", files["latin1"]],
                 ["--manifest", files["clip"].parent, "--prompts", files["latin1"]]):
        code, _, err = _run(capsys, "explain-corpus", *args, "--out", tmp_path / "corpus")
        assert "not UTF-8" in _one_line_error(code, err)
    code, _, err = _run(capsys, "train", "--clap", "tiny", "--data", _latin1_csv(tmp_path), "--out", tmp_path / "run")
    assert "not UTF-8" in _one_line_error(code, err)
    with pytest.raises(DataError, match="manifest .* not UTF-8"):
        read_manifest(files["latin1"])
    with pytest.raises(DataError, match="not UTF-8"):
        read_prompts(files["latin1"])


def _latin1_csv(folder: Path) -> Path:
    path = folder / "captions-latin1.csv"
    path.write_bytes("path,caption\nx.wav,un café\n".encode("latin-1"))
    return path


@pytest.mark.parametrize("device", ["banana", "cuda:99", "cuda"])
def test_cli_bad_devices(capsys, files, tmp_path, no_model, device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    for argv in (["classify", files["clip"], *P_ARGS], ["explain", files["clip"], *P_ARGS, "--out", tmp_path],
                 ["train", "--data", files["captions"], "--out", tmp_path / "run"]):
        code, _, err = _run(capsys, *argv, "--device", device)
        assert device in _one_line_error(code, err)


def test_api_bad_devices(tiny_backend):
    with pytest.raises(ConfigError, match="banana"):
        check_device("banana")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="not available"):
            Explainer(tiny_backend, None, device="cuda")
        with pytest.raises(ConfigError, match="not available"):
            Explainer.from_pretrained(device="cuda")


def test_cli_empty_msclap_checkpoint(capsys, files):
    code, _, err = _run(capsys, "classify", files["clip"], *P_ARGS, "--clap", f"msclap2022:{files['empty_pth']}")
    assert "empty" in _one_line_error(code, err)


@pytest.mark.parametrize("bad, word", [(["--lr", "nan"], "--lr"), (["--lr", "0"], "--lr"),
                                       (["--widths", "0", "8", "8", "8"], "--widths"),
                                       (["--widths", "12", "16", "16", "16"], "--widths"),
                                       (["--batch-size", "0"], "--batch-size"), (["--max-steps", "-3"], "--max-steps"),
                                       (["--max-steps", "0"], "--max-steps"), (["--epochs", "-1"], "--epochs"),
                                       (["--val-fraction", "1"], "--val-fraction"),
                                       (["--checkpoint-every", "0"], "--checkpoint-every"),
                                       (["--lambda1", "-1"], "--lambda1")])
def test_cli_train_bad_numbers(capsys, files, tmp_path, no_model, bad, word):
    run = tmp_path / "run"
    code, out, err = _run(capsys, "train", "--clap", "tiny", "--data", files["captions"], "--out", run, *bad)
    line = _one_line_error(code, err)
    assert word in line and "group size" not in line
    assert out == "" and not run.exists()


def test_cli_serve_args_checked_before_launch(capsys, files, no_model, monkeypatch):
    pytest.importorskip("gradio", reason="the web extra is not installed")

    def launched(*a, **k):
        raise AssertionError("the server was launched")

    monkeypatch.setattr("lmaczs.web.serve", launched)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, _, err = _run(capsys, "serve", "--port", port)
        assert "in use" in _one_line_error(code, err)
    for bad, word in ((["--max-upload-mb", "-5"], "--max-upload-mb"), (["--max-upload-mb", "nan"], "--max-upload-mb"),
                      (["--max-seconds", "0"], "--max-seconds"), (["--port", "70000"], "--port"),
                      (["--examples", "/nonexistent"], "--examples")):
        code, _, err = _run(capsys, "serve", *bad)
        assert word in _one_line_error(code, err)


# -- 2. checks before the work ----------------------------------------------------------------------------------
def test_checks_before_loading_for_every_command(capsys, files, tmp_path, no_model):
    cases = {
        "explain --out": ["explain", files["clip"], *P_ARGS, "--out", files["a_file"]],
        "explain --report": ["explain", files["clip"], *P_ARGS, "--out", tmp_path / "o", "--report", tmp_path],
        "explain missing audio": ["explain", tmp_path / "missing.wav", *P_ARGS, "--out", tmp_path / "o"],
        "explain bad target": ["explain", files["clip"], *P_ARGS, "--target", "cat", "--out", tmp_path / "o"],
        "explain-corpus --out": ["explain-corpus", "--manifest", files["clip"].parent, "--prompts", files["latin1"],
                                 "--out", files["a_file"]],
        "explain-corpus --batch-size": ["explain-corpus", "--manifest", files["clip"].parent, "--prompts",
                                        files["latin1"], "--out", tmp_path / "c", "--batch-size", "0"],
        "train --out": ["train", "--clap", "tiny", "--data", files["captions"], "--out", files["a_file"]],
        "train --data": ["train", "--clap", "tiny", "--data", tmp_path / "none.csv", "--out", tmp_path / "r"],
        "train --resume": ["train", "--clap", "tiny", "--data", files["captions"], "--out", tmp_path / "r",
                           "--resume"],
        "evaluate --out": ["evaluate", "--out", files["a_file"]],
        "evaluate --batch-size": ["evaluate", "--out", tmp_path / "e", "--batch-size", "0"],
        "export --to": ["export", files["decoder"], "--to", files["a_file"]],
    }
    for what, argv in cases.items():
        code, out, err = _run(capsys, *argv)
        _one_line_error(code, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing created


# -- 3. no longer silently accepted -----------------------------------------------------------------------------
def test_api_train_refuses_non_positive_steps(files, tmp_path):
    for bad in (-3, 0):
        with pytest.raises(ConfigError, match="--max-steps"):
            train(TrainConfig(clap="tiny", data=str(files["captions"]), out=str(tmp_path / "run"), max_steps=bad))
    assert not (tmp_path / "run").exists()


def test_complex_and_non_numeric_arrays_refused(tiny_backend):
    ex = Explainer(tiny_backend)
    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    for bad in (x + 1j * x, torch.from_numpy(x + 1j * x)):
        with pytest.raises(AudioError, match="complex"):
            ex.classify(bad, PROMPTS, sample_rate=8000)
    for bad in (np.array([object()] * 8000), np.array(["a"] * 8000), np.ones(8000, dtype=bool),
                [[0.1, 0.2], [0.3]]):
        with pytest.raises(AudioError) as e:
            load_audio(bad, 8000, sample_rate=8000)
        assert "\n" not in str(e.value)


def test_nothing_to_explain(tiny_backend, files):
    ex = Explainer(tiny_backend)
    n = 16000
    cases = {"near-silent": 1e-30 * np.sin(np.arange(n)), "DC": np.full(n, 0.5),
             "DC plus dust": 0.5 + 1e-9 * np.sin(np.arange(n))}
    for word, arr in cases.items():
        with pytest.raises(AudioError, match="nothing to explain"):
            ex.classify(arr.astype(np.float32), PROMPTS, sample_rate=8000)
    with pytest.raises(AudioError, match="nothing to explain"):
        ex.classify(files["near_silent"], PROMPTS)
    # quiet but real audio is still explained, and dataset loaders keep accepting what they did
    assert sum(ex.classify(1e-4 * np.sin(np.arange(n) * 0.3), PROMPTS, sample_rate=8000).values()) == pytest.approx(1)
    assert load_audio(np.full(n, 0.5, np.float32), 8000, sample_rate=8000).shape == (n,)


# -- 4. no data lost or doubled ---------------------------------------------------------------------------------
def test_output_stems_are_unique():
    assert output_stems(["a/x.wav", "b/x.wav", "y.wav"]) == ["a-x", "b-x", "y"]
    assert output_stems(["p/a/x.wav", "q/a/x.wav"]) == ["p-a-x", "q-a-x"]
    assert output_stems(["q/y.wav", "q/y.flac"]) == ["y-wav", "y-flac"]
    assert output_stems(["z.wav", "z.wav"]) == ["z", "z-2"]
    assert output_stems(["one.wav"]) == ["one"]
    names = output_stems(["a/x.wav", "b/x.wav", "a-x.wav", "a/x.flac"])
    assert len(set(names)) == 4


def test_cli_explain_same_names_keeps_both(capsys, files, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, "explain", files["a_x"], files["b_x"], *P_ARGS, "--clap", "tiny", "--decoder",
                             files["decoder"], "--out", out)
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{s}.{e}" for s in ("a-x", "b-x") for e in ("explanation.wav", "png", "json"))
    sources = {json.loads((out / f"{s}.json").read_text())["source"] for s in ("a-x", "b-x")}
    assert sources == {str(files["a_x"]), str(files["b_x"])}


def _cfg(files, out: Path, **kw) -> TrainConfig:
    base = dict(clap="tiny", data=str(files["captions"]), out=str(out), widths=list(TINY_WIDTHS), batch_size=2,
                lr=1e-3, val_fraction=0.2, checkpoint_every=2, log_every=1, max_steps=2, progress=False)
    return TrainConfig(**{**base, **kw})


def test_train_lock_refuses_a_second_run(files, tmp_path):
    out = tmp_path / "run"
    with DirLock(out, owner="a test"):
        with pytest.raises(OutputError, match="in use") as e:
            train(_cfg(files, out))
        assert "\n" not in str(e.value) and str(os.getpid()) in str(e.value)
    assert not (out / ".lock").exists()
    assert train(_cfg(files, out))["steps"] == 2
    assert not (out / ".lock").exists()  # released (and removed) after the run


def test_resume_truncates_log_and_removes_temps(files, tmp_path):
    out = tmp_path / "run"
    train(_cfg(files, out))
    log = out / "log.jsonl"
    # a run killed (SIGKILL: no checkpoint on the way out) after logging steps 3 and 4, in a checkpoint write
    with log.open("a") as fh:
        fh.write(json.dumps({"step": 3, "train": {"total": 1.0}}) + "\n")
        fh.write(json.dumps({"step": 4, "train": {"total": 1.0}}) + "\n")
        fh.write('{"step": 5, "tra')
    stale = out / ".checkpoint.safetensors.abc123xy.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert train(_cfg(files, out, max_steps=4), resume=True)["steps"] == 4
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    train_steps = [r["step"] for r in rows if "train" in r]
    assert train_steps == [1, 2, 3, 4]
    assert not stale.exists()


def test_truncate_log_keeps_rows_up_to_step(tmp_path):
    log = tmp_path / "log.jsonl"
    text = "".join(json.dumps({"step": s, "train": {}}) + "\n" for s in (1, 2, 3))
    log.write_text(text)
    truncate_log(log, 3)
    assert log.read_text() == text  # untouched when nothing is past the step
    truncate_log(log, 2)
    assert [json.loads(x)["step"] for x in log.read_text().splitlines()] == [1, 2]


def test_corpus_lock(files, tmp_path):
    ex = Explainer.load("tiny", files["decoder"])
    clips = [files["clip"], files["a_x"], files["b_x"]]
    out = tmp_path / "corpus"
    with DirLock(out, owner="a test"):
        with pytest.raises(OutputError, match="in use"):
            explain_corpus(ex, clips, PROMPTS, out, progress=False)
    # shards share the folder; the same shard twice, or an unsharded job beside a shard, is refused
    with DirLock(out, ".lock.1-of-2"), DirLock(out, shared=True):
        summary = explain_corpus(ex, clips, PROMPTS, out, shard=(0, 2), progress=False)
        assert summary["done"] == 2
        with pytest.raises(OutputError, match="in use"):
            explain_corpus(ex, clips, PROMPTS, out, shard=(1, 2), progress=False)
        with pytest.raises(OutputError, match="in use"):
            explain_corpus(ex, clips, PROMPTS, out, progress=False)
    stale = out / "masks" / ".x-00000000.npz.abcdefgh.tmp"
    stale.write_bytes(b"half")
    assert explain_corpus(ex, clips, PROMPTS, out, progress=False)["done"] == 1
    assert not stale.exists() and not list(out.glob(".lock*"))


def test_corpus_stops_on_a_full_disk_without_recording_files(files, tmp_path, monkeypatch):
    """A write failure is no fault of the input file: the job stops, and a restart explains the file."""
    import lmaczs.corpus as corpus

    ex = Explainer.load("tiny", files["decoder"])
    out = tmp_path / "corpus"
    real = corpus.atomic_write

    def full(path, write):
        if Path(path).suffix == ".npz":
            raise OutputError(f"cannot write {path}: {os.strerror(errno.ENOSPC)}")
        return real(path, write)

    monkeypatch.setattr(corpus, "atomic_write", full)
    with pytest.raises(OutputError, match="No space"):
        explain_corpus(ex, [files["clip"]], PROMPTS, out, progress=False)
    assert read_results(out) == []
    monkeypatch.setattr(corpus, "atomic_write", real)
    assert explain_corpus(ex, [files["clip"]], PROMPTS, out, progress=False)["done"] == 1


# -- 5. one bad file does not stop the batch ---------------------------------------------------------------------
def test_corpus_symlink_loop_is_a_bad_file(files, tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    (folder / "loop1.wav").symlink_to(folder / "loop2.wav")
    (folder / "loop2.wav").symlink_to(folder / "loop1.wav")
    (folder / "dangling.wav").symlink_to(folder / "nowhere.wav")
    manifest = tmp_path / "files.csv"
    manifest.write_text(f"path\n{folder / 'loop1.wav'}\n{files['clip']}\n{folder / 'dangling.wav'}\n")
    ex = Explainer.load("tiny", files["decoder"])
    for source, out in ((manifest, tmp_path / "out_csv"), (folder, tmp_path / "out_dir")):
        listed = read_manifest(source)
        summary = explain_corpus(ex, listed, PROMPTS, out, progress=False)
        errors = {Path(r["path"]).name: r["error"] for r in read_results(out) if "error" in r}
        assert "loop1.wav" in errors and "symbolic link loop" in errors["loop1.wav"]
        assert "not found" in errors["nowhere.wav"]  # the dangling link, resolved
        if source == manifest:
            assert summary["done"] == 1
    assert "loop2.wav" in {Path(r["path"]).name for r in read_results(tmp_path / "out_dir")}


# -- 6. Python API input checks ---------------------------------------------------------------------------------
def test_sample_rates_validated():
    x = np.random.default_rng(0).standard_normal(48000).astype(np.float32)
    for bad in (0, -8000, 1, 999, 768_001, 44100.5, float("nan"), True, "44100"):
        with pytest.raises(AudioError, match="sample rate") as e:
            load_audio(x, 16000, sample_rate=bad)
        assert "1000" in str(e.value) and "768000" in str(e.value)
    assert load_audio(x, 16000, sample_rate=np.int64(48000)).shape == (16000,)
    assert load_audio(x, 16000, sample_rate=48000.0).shape == (16000,)


def test_channel_axis_is_the_shorter_one():
    rng = np.random.default_rng(0)
    cn = rng.standard_normal((16, 8000)).astype(np.float32)
    np.testing.assert_allclose(to_mono(cn), cn.mean(0), atol=1e-7)
    np.testing.assert_allclose(to_mono(cn.T), cn.mean(0), atol=1e-7)
    assert load_audio(cn, 8000, sample_rate=8000).shape == (8000,)
    assert load_audio(rng.standard_normal((MAX_CHANNELS, 8000)), 8000, sample_rate=8000).shape == (8000,)
    with pytest.raises(AudioError, match="channels"):
        load_audio(rng.standard_normal((MAX_CHANNELS + 1, 8000)), 8000, sample_rate=8000)


def test_text_file_named_mp3(files, capfd):
    with pytest.raises(AudioError, match="not a readable audio file"):
        load_audio(files["text_mp3"], 16000)
    err = capfd.readouterr().err
    assert "Note:" not in err and err == ""  # libmpg123 never saw it


def test_unreadable_paths_say_why(tmp_path):
    (tmp_path / "loop.wav").symlink_to(tmp_path / "loop.wav")
    (tmp_path / "folder.wav").mkdir()
    for name, word in (("loop.wav", "symbolic link loop"), ("folder.wav", "folder"), ("missing.wav", "not found")):
        with pytest.raises(AudioError, match=word):
            load_audio(tmp_path / name, 16000)


# -- 9. train defaults to the embedded model ---------------------------------------------------------------------
def test_train_clap_defaults_to_default():
    args = build_parser().parse_args(["train", "--data", "d.csv", "--out", "run"])
    assert args.clap == "default"


# -- the installed console script --------------------------------------------------------------------------------
def test_console_script_bad_inputs(files, tmp_path):
    script = Path(sys.executable).with_name("lmac-zs")
    if not script.is_file():
        pytest.skip(f"console script not installed next to {sys.executable} (pip install -e .)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    dec = ["--clap", "tiny", "--decoder", str(files["decoder"])]
    train_args = ["train", "--clap", "tiny", "--data", str(files["captions"]), "--out", str(tmp_path / "run")]
    cases = {
        "out is a file": ["explain", files["clip"], *P_ARGS, *dec, "--out", files["a_file"]],
        "device": ["classify", files["clip"], *P_ARGS, "--device", "banana"],
        "prompts not UTF-8": ["classify", files["clip"], "--prompts-file", files["latin1"], "--clap", "tiny"],
        "text named mp3": ["classify", files["text_mp3"], *P_ARGS, "--clap", "tiny"],
        "near-silent": ["classify", files["near_silent"], *P_ARGS, "--clap", "tiny"],
        "empty msclap": ["classify", files["clip"], *P_ARGS, "--clap", f"msclap2022:{files['empty_pth']}"],
        "lr nan": [*train_args, "--lr", "nan"],
        "batch size 0": [*train_args, "--batch-size", "0"],
        "upload limit": ["serve", "--max-upload-mb", "-5"],
        "corpus manifest": ["explain-corpus", "--manifest", files["latin1"], "--prompts", files["latin1"],
                            "--out", tmp_path / "c"],
    }

    def run(argv):
        return subprocess.run([str(script), *map(str, argv)], capture_output=True, text=True, env=env, timeout=120)

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(cases, pool.map(run, cases.values())))
    for what, res in results.items():
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2, f"{what}: exit {res.returncode}\n{res.stderr}"
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{what}: {res.stderr}"
        assert "Traceback" not in res.stderr and res.stdout == "", what
    assert not (tmp_path / "run").exists() and not (tmp_path / "o").exists() and not (tmp_path / "c").exists()
