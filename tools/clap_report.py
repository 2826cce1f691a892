#!/usr/bin/env python
"""Train and score the embedded CLAP recipes; print the model card's accuracy table (and write it as JSON).

    python tools/clap_report.py --data ../shared/data/esc50 --cache-dir /tmp/clapcache [--shipped] [--json out.json]

Rows (all zero-shot, prompt ``eval_prompt(category)`` = "this is the sound of <label>"):
- esc50-eval: trained on split A; 50-way on all of split B and on B's odd-target clips.
- default: trained on all clips; accuracy by 5-fold cross-validation grouped by src_file (same recipe, 50-way).
- zeroshot: trained on A's even-target clips; 25-way on B's odd-target clips among the 25 odd-class prompts.
- baseline: frozen aisfx + one linear map onto the frozen MiniLM prompt embeddings (no augmentation), trained
  like esc50-eval / zeroshot.
Models are trained into a temporary folder (with the same seed they are byte-identical to what
``lmac-zs train-clap --threads 1`` writes into src/lmaczs/assets; times here are shortened by the view cache);
``--shipped`` scores the packaged esc50-eval model instead of training one. Split B is only ever scored here,
never used to choose anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lmaczs import esc50  # noqa: E402
from lmaczs.clap.embedded import EmbeddedClap  # noqa: E402
from lmaczs.clap.minilm import MiniLmEncoder  # noqa: E402
from lmaczs.clap_train import evaluate_zero_shot, train_clap  # noqa: E402

BASELINE = dict(audio_hidden=0, embed_dim=384, train_text=False, n_views=0, n_mix=0, finetune_block4=False,
                dropout=0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "esc50")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--shipped", action="store_true", help="score the packaged esc50-eval model (no training)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--skip", nargs="*", default=[], help="rows to skip: eval, default, cv, zeroshot, baseline")
    args = ap.parse_args()
    torch.set_num_threads(1)
    text = MiniLmEncoder()
    clips = esc50.read_esc50(args.data)
    names = dict(zip(sorted({c.target for c in clips}), esc50.class_names(clips)))
    b_all = esc50.select(clips, splits=["B"])
    b_odd = esc50.select(clips, splits=["B"], targets="odd")
    odd_names = {t: n for t, n in names.items() if t % 2 == 1}
    results: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="clap-report-"))

    def train(recipe: str, out: Path | None, **kw):
        return train_clap(args.data, out, recipe, args.seed, text_encoder=text, progress=False,
                          cache_dir=args.cache_dir, **kw)

    def load(out: Path) -> EmbeddedClap:
        return EmbeddedClap.from_package(str(out), text_encoder=text)

    def score(model: EmbeddedClap, which: list, classes: dict) -> float:
        return evaluate_zero_shot(model, which, classes)["accuracy"]

    if "eval" not in args.skip:
        if args.shipped:
            m, seconds = EmbeddedClap.from_package("esc50-eval", text_encoder=text), None
        else:
            seconds = train("esc50-eval", tmp / "esc50-eval").seconds
            m = load(tmp / "esc50-eval")
        results["esc50-eval"] = {"B_all_50way": score(m, b_all, names), "B_odd_50way": score(m, b_odd, names),
                                 "n_B_all": len(b_all), "n_B_odd": len(b_odd), "train_seconds": seconds}
        print("esc50-eval", results["esc50-eval"], flush=True)
    if "zeroshot" not in args.skip:
        r = train("zeroshot", tmp / "zeroshot")
        m = load(tmp / "zeroshot")
        results["zeroshot"] = {"B_odd_25way": score(m, b_odd, odd_names), "train_seconds": r.seconds}
        print("zeroshot", results["zeroshot"], flush=True)
    if "baseline" not in args.skip:
        r = train("esc50-eval", tmp / "baseline", **BASELINE)
        m = load(tmp / "baseline")
        rz = train("zeroshot", tmp / "baseline-zs", **BASELINE)
        mz = load(tmp / "baseline-zs")
        results["baseline"] = {"B_all_50way": score(m, b_all, names), "B_odd_50way": score(m, b_odd, names),
                               "B_odd_25way_zeroshot": score(mz, b_odd, odd_names),
                               "train_seconds": r.seconds + rz.seconds}
        print("baseline", results["baseline"], flush=True)
    if "default" not in args.skip:
        r = train("default", tmp / "default")
        results["default"] = {"train_seconds": r.seconds, "train_clips": len(clips)}
        print("default", results["default"], flush=True)
    if "cv" not in args.skip:
        right, n, per_fold = 0, 0, []
        for k, (tr, te) in enumerate(esc50.grouped_folds(clips, args.folds, seed=args.seed)):
            t0 = time.time()
            out = tmp / f"cv{k}"
            train("default", out, clips=tr)
            acc = score(load(out), te, names)
            per_fold.append(acc)
            right += round(acc * len(te))
            n += len(te)
            print(f"fold {k}: {acc:.3f} on {len(te)} clips ({time.time() - t0:.0f} s)", flush=True)
        results.setdefault("default", {}).update({"cv_50way": right / n, "cv_folds": per_fold, "cv_clips": n})
        print("default", results["default"], flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
