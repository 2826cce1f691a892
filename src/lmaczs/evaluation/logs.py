"""The evaluation's results files: append-only JSON lines that make every run resumable, and the settings check
that keeps one output folder to one evaluation.

``results.jsonl`` (faithfulness), ``localization.jsonl`` and ``separation.jsonl`` hold one line per explanation,
written as soon as a method's batch is done; a rerun of the same command skips the lines already there, and a
line cut by a crash is dropped. ``config.json`` records the settings that change per-line results; a rerun with
other such settings is refused (choose another ``--out``). The clip selection (``--limit``, ``--max-clips``,
``--targets``) is not among them: a larger selection extends the same files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import CheckpointError

RESULTS, LOCALIZATION, SEPARATION = "results.jsonl", "localization.jsonl", "separation.jsonl"
CONFIG = "config.json"
LOGS = (RESULTS, LOCALIZATION, SEPARATION)


class ResultLog:
    """Append-only JSON lines keyed by a tuple of fields; a partial last line (a crash) is dropped."""

    def __init__(self, path: Path, key_fields: Sequence[str]):
        self.path = Path(path)
        self.key_fields = tuple(key_fields)
        self.rows: list[dict] = []
        self.done: set[tuple] = set()
        if self.path.is_file():
            text = self.path.read_text()
            if text and not text.endswith("\n"):  # interrupted mid-line: drop the fragment
                text = text[: text.rfind("\n") + 1]
                self.path.write_text(text)
            for n, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        row = json.loads(line)
                        key = self.key(row)
                    except (ValueError, KeyError):
                        raise CheckpointError(f"{self.path} line {n} is corrupt; delete that line to resume") \
                            from None
                    self.rows.append(row)
                    self.done.add(key)

    def key(self, row: dict) -> tuple:
        return tuple(row[k] for k in self.key_fields)

    def has(self, *key) -> bool:
        return tuple(key) in self.done

    def append(self, rows: Iterable[dict]) -> None:
        rows = list(rows)
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            for row in rows:
                fh.write(json.dumps(row, allow_nan=True) + "\n")
            fh.flush()
        for row in rows:
            self.rows.append(row)
            self.done.add(self.key(row))


def same_model(saved: dict, now: dict) -> bool:
    """Results may be extended when the weights are the same (paths may move; an ablation or mel decoder may be
    added later, but not swapped for another)."""
    keys = ("clap", "domain", "backend_digest", "decoder_digest")
    if any(saved.get(k) != now.get(k) for k in keys):
        return False
    for extra in ("ablation_digest", "mel_digest"):
        a, b = saved.get(extra), now.get(extra)
        if a is not None and b is not None and a != b:
            return False
    return True


def read_settings(out: Path) -> dict:
    """The result settings an output folder's ``config.json`` recorded (``{}`` when it records none)."""
    path = Path(out) / CONFIG
    try:
        return json.loads(path.read_text()).get("result_settings", {})
    except ValueError:
        raise CheckpointError(f"{path} is corrupt; choose another --out") from None


def check_out_dir(out: Path, settings: dict, result_keys: Sequence[str]) -> None:
    """Refuse to append to results written with other result-changing settings (``result_keys`` of
    ``settings``); nothing to check when the folder holds no results yet."""
    path = Path(out) / CONFIG
    if path.is_file() and any((Path(out) / name).is_file() for name in LOGS):
        saved = read_settings(out)
        changed = [k for k in result_keys if k != "model" and saved.get(k) != settings.get(k)]
        if not same_model(saved.get("model", {}), settings["model"]):
            changed.insert(0, "model")
        if changed:
            raise CheckpointError(f"{out} holds results of another evaluation (settings differ: {changed}); "
                                  "choose another --out")
