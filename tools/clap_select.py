#!/usr/bin/env python
"""Choose the embedded CLAP's recipe on the protocol's validation parts only (never on held-out data).

    python tools/clap_select.py --cache-dir /tmp/clapcache --json docs/results/clap-selection.json \\
        --variant base --variant wide:audio_hidden=1024 --variant balanced:balance=0.5

Trains on ``validation_split(training_pool("esc50-eval"))``'s train part and scores zero-shot top-1 on its
validation part: a recording-grouped 20 % of ESC-50 A ∪ C (50-way over ESC-50's prompts) and UrbanSound8K fold 6
(10-way). A variant is ``name[:field=value,...]`` over :class:`lmaczs.clap_train.Recipe` fields.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections import Counter
from dataclasses import fields
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lmaczs import datasets  # noqa: E402
from lmaczs.clap.minilm import MiniLmEncoder  # noqa: E402
from lmaczs.clap_train import Recipe, train_clap  # noqa: E402


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    types = {f.name: f.type for f in fields(Recipe)}
    kw = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in types:
            raise SystemExit(f"unknown recipe field {key!r}")
        kind = types[key] if isinstance(types[key], str) else types[key].__name__
        kw[key] = value.lower() in ("1", "true", "yes") if kind == "bool" else (
            int(value) if kind == "int" else float(value) if kind == "float" else value)
    return name, kw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--variant", action="append", default=[], help="name[:field=value,...] (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    text = MiniLmEncoder()
    train, val = datasets.validation_split(datasets.training_pool("esc50-eval", args.data))
    print(f"train {len(train)} {dict(Counter(c.dataset for c in train))}; "
          f"validation {len(val)} {dict(Counter(c.dataset for c in val))}", flush=True)
    rows = json.loads(args.json.read_text()) if args.json and args.json.is_file() else {}
    for spec in args.variant or ["base"]:
        name, kw = parse_variant(spec)
        t0 = time.time()
        r = train_clap(args.data, None, "esc50-eval", args.seed, clips=train, val_clips=val, text_encoder=text,
                       cache_dir=args.cache_dir, progress=True, **kw)
        last = r.history[-1]
        rows[name] = {"overrides": kw, "val_esc50": last.get("val_esc50"), "val_urbansound8k": last.get("val_urbansound8k"),
                      "val_mean": last.get("val_accuracy"), "seconds": round(time.time() - t0, 1),
                      "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
                      "curve": [(h["epoch"], round(h.get("val_esc50", 0), 3), round(h.get("val_urbansound8k", 0), 3))
                                for h in r.history[::10]]}
        print(name, json.dumps({k: v for k, v in rows[name].items() if k != "curve"}), flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
