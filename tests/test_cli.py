"""The lmac-zs command line, in-process through main() and once through the installed console script."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import soundfile as sf

from conftest import HAVE_ESC50, TINY_WIDTHS, esc50_paths
from lmaczs.checkpoint import save_decoder
from lmaczs.cli import main
from lmaczs.decoder import DecoderConfig, MaskDecoder

PROMPTS = ["a dog barks", "rain falls", "a clock ticks"]
P_ARGS = [a for p in PROMPTS for a in ("-p", p)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two real clips, or two synthetic 3 s noise bursts when the shared data is absent."""
    if HAVE_ESC50:
        return esc50_paths(2)
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    paths = [folder / f"noise{k}.wav" for k in range(2)]
    for k, p in enumerate(paths):
        sf.write(p, (0.1 * (k + 1) * rng.standard_normal(3 * 16000)).astype(np.float32), 16000)
    return paths


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code, err):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err


def test_classify_table(capsys, clips):
    code, out, err = _run(capsys, "classify", clips[0], clips[1], *P_ARGS, "--clap", "tiny")
    assert code == 0 and "Traceback" not in err
    lines = out.splitlines()
    assert lines[0] == str(clips[0]) and lines[len(PROMPTS) + 1] == str(clips[1])
    rows = [re.fullmatch(r"  (.+?) +(\d\.\d{3})  █*", r) for r in lines[1:len(PROMPTS) + 1]]
    assert all(rows), lines
    assert sorted(m.group(1) for m in rows) == sorted(PROMPTS)
    values = [float(m.group(2)) for m in rows]
    assert values == sorted(values, reverse=True)  # best first
    assert sum(values) == pytest.approx(1.0, abs=3e-3)


def test_classify_json(capsys, clips):
    code, out, _ = _run(capsys, "classify", clips[0], *P_ARGS, "--clap", "tiny", "--json")
    assert code == 0
    scores = json.loads(out)
    assert list(scores) == PROMPTS and sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    code, out, _ = _run(capsys, "classify", *clips, *P_ARGS, "--clap", "tiny", "--json")
    both = json.loads(out)
    assert list(both) == [str(c) for c in clips] and both[str(clips[0])] == pytest.approx(scores)


def test_classify_prompts_file(capsys, clips, tmp_path):
    f = tmp_path / "prompts.txt"
    f.write_text("\n".join(PROMPTS[1:]) + "\n\n")
    code, out, _ = _run(capsys, "classify", clips[0], "-p", PROMPTS[0], "--prompts-file", f, "--clap", "tiny",
                        "--json")
    assert code == 0 and list(json.loads(out)) == PROMPTS


def test_explain_writes_files(capsys, clips, tiny_run, tmp_path):
    out_dir = tmp_path / "out"
    code, out, err = _run(capsys, "explain", clips[0], *P_ARGS, "--decoder", tiny_run.path, "--out", out_dir,
                          "--target", PROMPTS[1])
    assert code == 0, err
    stem = clips[0].stem
    names = {f"{stem}.explanation.wav", f"{stem}.png", f"{stem}.json"}
    assert {p.name for p in out_dir.iterdir()} == names
    info = json.loads((out_dir / f"{stem}.json").read_text())
    assert info["prediction"] == PROMPTS[1] and list(info["scores"]) == PROMPTS
    assert f"'{PROMPTS[1]}'" in out and all(n in out for n in names)


def _other_geometry_run(path: Path) -> Path:
    cfg = DecoderConfig(hidden_shapes=[(64, 108, 48), (128, 54, 24), (256, 27, 12), (512, 27, 12)],
                        mask_shape=(216, 1025), text_dim=32, widths=[8, 8, 8, 8])
    save_decoder(path, MaskDecoder(cfg), {"backend": {"spec": "tiny:0", "domain": "stft"}})
    return path


def test_errors_exit_2_with_one_line(capsys, clips, tiny_run, tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(0).bytes(3000))
    mismatched = _other_geometry_run(tmp_path / "other_run")
    run = ["--decoder", tiny_run.path]
    cases = {
        "missing file": ["explain", tmp_path / "missing.wav", *P_ARGS, *run],
        "corrupt file": ["explain", corrupt, *P_ARGS, *run],
        "no prompts": ["explain", clips[0], *run],
        "duplicate prompts": ["explain", clips[0], "-p", "rain", "-p", "rain", *run],
        "target not a prompt": ["explain", clips[0], *P_ARGS, "--target", "a cat", *run],
        "unknown backend": ["explain", clips[0], *P_ARGS, *run, "--clap", "nope"],
        "missing decoder dir": ["explain", clips[0], *P_ARGS, "--decoder", tmp_path / "no_run"],
        "mismatched decoder": ["explain", clips[0], *P_ARGS, "--decoder", mismatched],
        "no decoder for tiny": ["explain", clips[0], *P_ARGS, "--clap", "tiny"],
        "missing prompts file": ["explain", clips[0], "--prompts-file", tmp_path / "none.txt", *run],
    }
    for what, argv in cases.items():
        out_dir = tmp_path / f"out_{what.replace(' ', '_')}"
        code, out, err = _run(capsys, *argv, "--out", out_dir)
        _assert_one_line_error(code, err)
        assert not out_dir.exists() or not any(out_dir.iterdir()), f"{what}: files written"
    for argv in (["classify", tmp_path / "missing.wav", *P_ARGS, "--clap", "tiny"],
                 ["classify", corrupt, *P_ARGS, "--clap", "tiny"],
                 ["classify", clips[0], "--clap", "tiny"],
                 ["classify", clips[0], *P_ARGS, "--clap", "nope"]):
        code, out, err = _run(capsys, *argv)
        _assert_one_line_error(code, err)
        assert out == ""


def test_train_and_refuse_overwrite(capsys, clips, tmp_path):
    data = tmp_path / "captions.csv"
    with data.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "caption"])
        for k, clip in enumerate(esc50_paths(4)):
            w.writerow([clip, f"sound number {k}"])
    argv = ["train", "--clap", "tiny", "--data", data, "--out", tmp_path / "run", "--max-steps", "2",
            "--batch-size", "2", "--widths", *TINY_WIDTHS, "--quiet"]
    code, out, err = _run(capsys, *argv)
    assert code == 0, err
    assert json.loads(out)["steps"] == 2
    assert (tmp_path / "run" / "decoder.safetensors").is_file()
    code, _, err = _run(capsys, *argv)
    _assert_one_line_error(code, err)
    assert "--resume" in err
    code, out, err = _run(capsys, *argv[:argv.index("2")], "3", *argv[argv.index("2") + 1:], "--resume")
    assert code == 0, err
    assert json.loads(out)["steps"] == 3


def _console_script() -> str:
    script = Path(sys.executable).with_name("lmac-zs")
    if not script.is_file():
        pytest.skip(f"console script not installed next to {sys.executable} (pip install -e .)")
    return str(script)


def test_console_script(clips, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    script = _console_script()
    ok = subprocess.run([script, "classify", str(clips[0]), *P_ARGS, "--clap", "tiny", "--json"],
                        capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert list(json.loads(ok.stdout)) == PROMPTS
    bad = subprocess.run([script, "classify", str(tmp_path / "missing.wav"), *P_ARGS, "--clap", "tiny"],
                         capture_output=True, text=True, env=env, timeout=300)
    _assert_one_line_error(bad.returncode, bad.stderr)
    assert "missing.wav" in bad.stderr and bad.stdout == ""


def test_export_ships_weights_and_json_only(capsys, clips, tiny_run, tmp_path):
    """`export --fp16` copies a run's decoder without its training state; it explains like the run."""
    from safetensors.torch import load_file

    from lmaczs.explain import Explainer

    dest = tmp_path / "shipped"
    code, out, err = _run(capsys, "export", tiny_run.path, "--to", dest, "--fp16")
    assert code == 0, err
    assert sorted(p.name for p in dest.iterdir()) == ["decoder.json", "decoder.safetensors"]
    assert all(t.dtype in (torch.float16, torch.int64) for t in load_file(str(dest / "decoder.safetensors")).values())
    prompts = ["a dog barking", "rain"]
    full = Explainer.load(None, tiny_run.path).explain(clips[0], prompts, target="rain")
    half = Explainer.load("tiny:0", dest).explain(clips[0], prompts, target="rain")
    assert abs(full.mask - half.mask).max() < 5e-3
