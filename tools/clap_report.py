#!/usr/bin/env python
"""The model card's accuracy table of the embedded CLAP, on held-out audio only (data README: the protocol).

    python tools/clap_report.py --cache-dir /tmp/clapcache --json docs/results/clap-report.json

Rows (zero-shot top-1; prompt ``eval_prompt(class)`` = "this is the sound of <label>"):
- ``esc50-eval`` (the shipped model, or trained here with ``--train``): 50-way on all of ESC-50 B and on B's
  odd-target clips; 10-way on UrbanSound8K folds 7–8; speech: LJ001-0101…0150 against the 60 sound classes plus
  "a person speaking" (how often speech wins), and how often a held-out sound clip is taken for speech.
- ``default``: grouped 5-fold cross-validation on ESC-50 (by recording) and fold-wise on UrbanSound8K folds 1–8,
  each fold's model trained on the default pool less the test fold (and less every clip of a test recording).
- ``zeroshot`` (class-disjoint): trained without ESC-50's odd-target classes, 25-way on B's odd-target clips.
- linear probe: frozen aisfx + one linear map onto frozen MiniLM, no augmentation, on the same pools.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lmaczs import datasets  # noqa: E402
from lmaczs.clap.embedded import EmbeddedClap  # noqa: E402
from lmaczs.clap.minilm import MiniLmEncoder  # noqa: E402
from lmaczs.clap_train import evaluate_zero_shot, train_clap  # noqa: E402

LINEAR_PROBE = dict(audio_hidden=0, embed_dim=384, text_hidden=0, train_text=False, n_views=0, n_mix=0, dropout=0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--train", action="store_true", help="train esc50-eval here instead of scoring the shipped one")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--skip", nargs="*", default=[], help="rows to skip: eval, probe, zeroshot, cv")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    text = MiniLmEncoder()
    esc = datasets.read_dataset("esc50", args.data)
    us = datasets.read_dataset("urbansound8k", args.data)
    esc_names, us_names = datasets.class_names(esc), datasets.class_names(us)
    b_all, b_odd = datasets.held_out("esc50", args.data), datasets.select(esc, splits=["B"], targets="odd")
    us_test = datasets.held_out("urbansound8k", args.data)
    speech = datasets.held_out("ljspeech", args.data)
    odd_names = [n for t, n in enumerate(esc_names) if t % 2 == 1]
    every = esc_names + us_names + ["speech"]
    results: dict = {"chance": {"esc50_50way": 1 / 50, "us8k_10way": 1 / 10, "speech_59way": 1 / len(set(every)),
                                "zeroshot_25way": 1 / 25}}

    def train(recipe: str, **kw):
        return train_clap(args.data, None, recipe, args.seed, text_encoder=text, progress=False,
                          cache_dir=args.cache_dir, **kw)

    def acc(model, clips, names) -> float:
        return round(evaluate_zero_shot(model, clips, names)["accuracy"], 4)

    def held_out_rows(model) -> dict:
        sounds = b_all + us_test
        taken = evaluate_zero_shot(model, sounds, every)["predictions"]
        return {"esc50_B_all_50way": acc(model, b_all, esc_names), "esc50_B_odd_50way": acc(model, b_odd, esc_names),
                "us8k_folds78_10way": acc(model, us_test, us_names),
                "speech_wins_vs_60_classes": acc(model, speech, every),
                "sound_taken_for_speech": round(sum(p == "speech" for p in taken) / len(sounds), 4),
                "n": {"esc50_B": len(b_all), "esc50_B_odd": len(b_odd), "us8k_78": len(us_test), "speech": len(speech)}}

    if "eval" not in args.skip:
        t0 = time.time()
        model = train("esc50-eval").model if args.train else EmbeddedClap.from_package("esc50-eval", text_encoder=text)
        results["esc50-eval"] = held_out_rows(model)
        print("esc50-eval", results["esc50-eval"], f"{time.time() - t0:.0f} s", flush=True)
    if "probe" not in args.skip:
        results["linear-probe"] = held_out_rows(train("esc50-eval", **LINEAR_PROBE).model)
        results["linear-probe"]["zeroshot_B_odd_25way"] = acc(train("zeroshot", **LINEAR_PROBE).model, b_odd, odd_names)
        print("linear-probe", results["linear-probe"], flush=True)
    if "zeroshot" not in args.skip:
        results["zeroshot"] = {"B_odd_25way": acc(train("zeroshot").model, b_odd, odd_names)}
        print("zeroshot", results["zeroshot"], flush=True)
    if "cv" not in args.skip:
        pool = datasets.training_pool("default", args.data)
        cv: dict = {}
        esc_pool = [c for c in pool if c.dataset == "esc50"]
        splits = [("esc50", test) for _, test in datasets.grouped_folds(esc_pool, args.folds, seed=args.seed)]
        splits += [("urbansound8k", [c for c in pool if c.dataset == "urbansound8k" and c.fold == k])
                   for k in range(1, 9)]
        for ds in ("esc50", "urbansound8k"):
            right = n = 0
            folds = []
            for which, test in splits:
                if which != ds:
                    continue
                heard = {c.recording for c in test}
                trainset = [c for c in pool if c.recording not in heard]
                model = train("default", clips=trainset).model
                a = evaluate_zero_shot(model, test, esc_names if ds == "esc50" else us_names)["accuracy"]
                folds.append(round(a, 4))
                right += a * len(test)
                n += len(test)
                print(f"default cv {ds}: fold {len(folds)} {a:.3f} on {len(test)} clips", flush=True)
            cv[ds] = {"accuracy": round(right / n, 4), "folds": folds, "clips": n}
        results["default"] = {"cv": cv}
        print("default", results["default"], flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
