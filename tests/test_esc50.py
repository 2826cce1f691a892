"""ESC-50-style folders: the real metadata and splits, class captions, filters, grouped splits, bad folders."""

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lmaczs import datasets
from lmaczs.errors import DataError


@pytest.fixture(scope="module")
def clips(esc50_dir):
    return datasets.read_esc50(esc50_dir)


def test_real_folder(clips, esc50_dir):
    """The data README's numbers: 728 clips (400 of fold 4), splits A 227 / B 193 / C 308, all 50 classes."""
    assert len(clips) == 728
    assert sum(c.fold == 4 for c in clips) == 400
    assert [sum(c.split == s for c in clips) for s in "ABC"] == [227, 193, 308]
    # C: the ESC-10 classes of folds 1, 2, 3, 5 only
    assert {c.fold for c in clips if c.split == "C"} == {1, 2, 3, 5}
    assert len({c.category for c in clips if c.split == "C"}) == 10
    assert all(c.path.is_file() and c.path.suffix == ".flac" and c.filename.endswith(".wav") for c in clips)
    assert all(c.path.parent == esc50_dir / "audio" for c in clips)
    assert len({c.target for c in clips}) == 50
    names = datasets.class_names(clips)
    assert len(names) == 50 and names[0] == "dog" and names[5] == "cat" and names[20] == "crying_baby"
    with (esc50_dir / "meta" / "esc50.csv").open(newline="") as fh:
        first = next(csv.DictReader(fh))
    c = clips[0]
    assert (c.filename, c.fold, c.target, c.category, c.src_file) == (
        first["filename"], int(first["fold"]), int(first["target"]), first["category"], first["src_file"])


def test_splits_keep_recordings_together(clips):
    by_src: dict[str, set] = {}
    for c in clips:
        by_src.setdefault(c.src_file, set()).add(c.split)
    assert all(len(s) == 1 for s in by_src.values())


def test_every_class_has_descriptions_and_prompts(clips):
    for name in datasets.class_names(clips):
        label = datasets.label_text(name)
        assert "_" not in label
        assert label in datasets.DESCRIPTIONS, f"no short descriptions for {label!r}"
        caps = datasets.captions_for(name)
        assert set(caps) == {t.format(label) for t in datasets.CAPTION_TEMPLATES} | set(datasets.DESCRIPTIONS[label])
        assert len(set(caps)) == len(caps) and all(c.strip() == c and c for c in caps)  # each caption once
        assert datasets.eval_prompt(name) == f"this is the sound of {label}" and datasets.eval_prompt(name) in caps
    assert datasets.label_text("crying_baby") == "crying baby"


def test_select(clips):
    b_odd = datasets.select(clips, splits=["B"], targets="odd")
    assert b_odd and all(c.split == "B" and c.target % 2 == 1 for c in b_odd)
    a_even = datasets.select(clips, splits=["A"], targets="even")
    assert a_even and all(c.split == "A" and c.target % 2 == 0 for c in a_even)
    assert len(datasets.select(clips, splits=["A", "B", "C"])) == len(clips) == len(datasets.select(clips))
    a_b = datasets.select(clips, splits=["A", "B"])
    assert len(b_odd) + len(a_even) + len(datasets.select(clips, splits=["A"], targets="odd")) + len(
        datasets.select(clips, splits=["B"], targets="even")) == len(a_b)
    assert {c.fold for c in datasets.select(clips, folds=[1, 2, 3, 5])} <= {1, 2, 3, 5}
    # each half of the classes holds 5 classes of each of ESC-50's 5 categories (targets 10k … 10k+9)
    for parity in ("even", "odd"):
        targets = {c.target for c in datasets.select(clips, targets=parity)}
        assert sorted(sum(t // 10 == k for t in targets) for k in range(5)) == [5] * 5
    with pytest.raises(DataError, match="targets"):
        datasets.select(clips, targets="prime")


def test_grouped_split(clips):
    part = datasets.select(clips, splits=["A"])
    train, val = datasets.grouped_split(part, val_fraction=0.25, seed=1)
    assert len(train) + len(val) == len(part) and val
    assert not {c.src_file for c in train} & {c.src_file for c in val}
    assert (train, val) == datasets.grouped_split(part, val_fraction=0.25, seed=1)
    # stratified: each class with several recordings sends round(fraction × recordings) of them to validation
    for t in {c.target for c in part}:
        groups = {c.src_file for c in part if c.target == t}
        in_val = {c.src_file for c in val if c.target == t}
        assert len(in_val) == (round(0.25 * len(groups)) if len(groups) > 1 else 0)


def _fake_folder(root: Path, rows: list[dict], splits: dict[str, str] | None = None, suffix: str = ".flac",
                 columns=("filename", "fold", "target", "category", "esc10", "src_file", "take")) -> Path:
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    with (root / "meta" / "esc50.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        sf.write(root / "audio" / Path(r["filename"]).with_suffix(suffix).name,
                 0.1 * np.ones(800, dtype=np.float32), 8000)
    if splits is not None:
        with (root / "meta" / "splits.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["filename", "split"])
            w.writerows(splits.items())
    return root


def _row(name, target, category, src):
    return {"filename": name, "fold": 1, "target": target, "category": category, "esc10": "False",
            "src_file": src, "take": "A"}


def test_small_synthetic_folders(tmp_path):
    rows = [_row("1-1-A-0.wav", 0, "dog", "1"), _row("1-2-A-1.wav", 1, "rooster", "2")]
    plain = datasets.read_esc50(_fake_folder(tmp_path / "plain", rows, suffix=".wav"))
    assert [c.split for c in plain] == [None, None] and plain[0].path.suffix == ".wav"
    assert datasets.select(plain, splits=["A"]) == []
    with_splits = datasets.read_esc50(_fake_folder(tmp_path / "split", rows, {"1-1-A-0.wav": "A", "1-2-A-1.wav": "B"}))
    assert [c.split for c in with_splits] == ["A", "B"]
    assert [c.label for c in datasets.select(with_splits, splits=["B"])] == ["rooster"]


def test_bad_folders(tmp_path):
    with pytest.raises(DataError, match="esc50.csv"):
        datasets.read_esc50(tmp_path)
    rows = [_row("1-1-A-0.wav", 0, "dog", "1")]
    root = _fake_folder(tmp_path / "gone", rows)
    (root / "audio" / "1-1-A-0.flac").unlink()
    with pytest.raises(DataError, match="not found"):
        datasets.read_esc50(root)
    with pytest.raises(DataError, match="src_file"):
        datasets.read_esc50(_fake_folder(tmp_path / "cols", rows, columns=("filename", "fold", "target", "category")))
    empty = _fake_folder(tmp_path / "empty", [])
    with pytest.raises(DataError, match="no clips"):
        datasets.read_esc50(empty)
