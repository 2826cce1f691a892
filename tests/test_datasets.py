"""The datasets sub-package on the real data: UrbanSound8K and LJ Speech layouts, the protocol's training pools,
validation parts and held-out sets (../shared/data/README.md), captions for every class; bad layouts."""

import csv
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from conftest import SHARED_DATA, needs_all_data
from lmaczs import datasets
from lmaczs.datasets import urbansound8k
from lmaczs.errors import DataError


@pytest.fixture(scope="module")
def pools():
    return {name: datasets.training_pool(name, SHARED_DATA) for name in datasets.POOLS}


@needs_all_data
def test_urbansound8k_layout():
    clips = datasets.read_dataset("urbansound8k", SHARED_DATA)
    assert len(clips) == 1235 and {c.fold for c in clips} == set(range(1, 9))
    assert {c.category for c in clips} == set(urbansound8k.CLASSES)
    assert all(c.path.suffix == ".ogg" and c.path.parent.name == f"fold{c.fold}" for c in clips)
    counts = Counter(c.category for c in clips)
    assert counts["dog_bark"] > 7 * counts["jackhammer"]  # the imbalance the README describes
    with (SHARED_DATA / "urbansound8k" / "meta" / "UrbanSound8K.csv").open(newline="") as fh:
        first = next(csv.DictReader(fh))
    assert (clips[0].filename, clips[0].src_file, clips[0].target) == (
        first["slice_file_name"], first["fsID"], int(first["classID"]))
    assert clips[0].recording == f"fs:{first['fsID']}" and clips[0].label == first["class"].replace("_", " ")


@needs_all_data
def test_ljspeech_layout_and_held_out_range():
    clips = datasets.read_dataset("ljspeech", SHARED_DATA)
    assert len(clips) == 150 and all(c.category == "speech" and c.path.suffix == ".flac" for c in clips)
    held = datasets.held_out("ljspeech", SHARED_DATA)
    assert [c.filename for c in held] == [f"LJ001-{k:04d}" for k in range(101, 151)]


@needs_all_data
def test_pools_follow_the_protocol(pools):
    esc = datasets.read_dataset("esc50", SHARED_DATA)
    eval_pool, default = pools["esc50-eval"], pools["default"]
    by = Counter(c.dataset for c in eval_pool)
    # A ∪ C minus the 4 ESC-50 clips whose recordings are in UrbanSound8K 7–8; folds 1–6 minus B's recordings
    assert by == {"esc50": 227 + 308 - 4, "urbansound8k": 996, "ljspeech": 100}
    assert Counter(c.dataset for c in default) == {"esc50": 728, "urbansound8k": 1235, "ljspeech": 100}
    held = (datasets.held_out("esc50", SHARED_DATA) + datasets.held_out("urbansound8k", SHARED_DATA)
            + datasets.held_out("ljspeech", SHARED_DATA))
    assert not {c.recording for c in eval_pool} & {c.recording for c in held}   # nothing heard twice
    assert not {c.key for c in eval_pool} & {c.key for c in held}
    left_out = {c.filename for c in esc if c.split in ("A", "C")} - {c.filename for c in eval_pool}
    assert left_out == {"1-85362-A-0.wav", "2-114280-A-0.wav", "4-186936-A-44.wav", "4-186940-A-44.wav"}
    assert {c.fold for c in eval_pool if c.dataset == "urbansound8k"} == set(range(1, 7))
    assert datasets.training_pool("esc50-eval", SHARED_DATA) == eval_pool  # one call, the same clips every time
    # unseen prompts / class-disjoint: no ESC-50 odd class, nor the UrbanSound8K class that names one (car horn)
    odd = {c.class_key for c in esc if c.target % 2}
    assert not {c.class_key for c in pools["unseen-prompts"]} & odd
    assert "car_horn" not in {c.category for c in pools["unseen-prompts"]}
    assert set(pools["unseen-prompts"]) < set(eval_pool)


@needs_all_data
def test_validation_split_is_grouped_and_uses_fold_6(pools):
    train, val = datasets.validation_split(pools["esc50-eval"])
    dropped = set(pools["esc50-eval"]) - set(train) - set(val)
    assert len(dropped) < 15  # train clips whose recording is also in the other dataset's validation part
    assert {c.recording for c in dropped} <= {c.recording for c in val}
    assert {c.fold for c in val if c.dataset == "urbansound8k"} == {6}
    assert not any(c.dataset == "ljspeech" for c in val)
    assert not {c.recording for c in train} & {c.recording for c in val}
    assert 80 <= sum(c.dataset == "esc50" for c in val) <= 130  # ~20 % of 531, whole recordings
    assert datasets.validation_split(pools["esc50-eval"]) == (train, val)


@needs_all_data
def test_every_class_has_captions_and_a_readable_prompt(pools):
    for c in {(c.dataset, c.category): c for c in pools["default"]}.values():
        caps = datasets.captions_for(c.category)
        label = datasets.label_text(c.category)
        assert "_" not in label and len(caps) >= 9 and len(set(caps)) == len(caps)
        assert datasets.eval_prompt(c.category) == f"this is the sound of {label}" in caps
    assert datasets.eval_prompt("engine_idling") == "this is the sound of engine idling"
    assert datasets.eval_prompt("speech") == "this is the sound of a person speaking"
    assert "a woman reading aloud" in datasets.captions_for("speech")
    # shared sounds are one class for contrastive training, two for evaluation
    us_dog = next(c for c in pools["default"] if c.category == "dog_bark")
    assert us_dog.class_key == "esc50:dog" and us_dog.label == "dog bark"


def test_bad_layouts(tmp_path):
    with pytest.raises(DataError, match="UrbanSound8K.csv"):
        datasets.read_urbansound8k(tmp_path)
    with pytest.raises(DataError, match="metadata.csv"):
        datasets.read_ljspeech(tmp_path)
    with pytest.raises(DataError, match="unknown training pool"):
        datasets.training_pool("everything", tmp_path)
    with pytest.raises(DataError, match="esc50 not found"):
        datasets.read_dataset("esc50", tmp_path)
    meta = tmp_path / "us" / "meta"
    meta.mkdir(parents=True)
    (meta / "UrbanSound8K.csv").write_text("slice_file_name,fsID,fold,classID,class\n1-3-0-0.wav,1,1,3,dog_bark\n")
    with pytest.raises(DataError, match="not found"):
        datasets.read_urbansound8k(tmp_path / "us")
    (tmp_path / "us" / "audio" / "fold1").mkdir(parents=True)
    sf.write(tmp_path / "us" / "audio" / "fold1" / "1-3-0-0.ogg", np.zeros(800, np.float32) + 0.1, 8000)
    (clip,) = datasets.read_urbansound8k(tmp_path / "us")
    assert clip.category == "dog_bark" and clip.fold == 1 and clip.path.suffix == ".ogg"


def test_a_root_given_as_the_esc50_folder_resolves_to_its_parent(tmp_path):
    (tmp_path / "esc50" / "meta").mkdir(parents=True)
    (tmp_path / "esc50" / "meta" / "esc50.csv").write_text("filename\n")
    assert datasets.data_root(tmp_path / "esc50") == tmp_path
    assert datasets.data_root(tmp_path) == tmp_path
    with pytest.raises(DataError, match="not found"):
        datasets.data_root(tmp_path / "nowhere")
