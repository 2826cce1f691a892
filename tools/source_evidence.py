#!/usr/bin/env python
"""How much evidence for prompt A does each part of a two-source mixture hold? For pairs of ESC-50 clips of
different classes (split A: training audio, for diagnosing the objective), spliced at the middle and overlapped at
0 dB as the training mixtures are (lmaczs.mixtures), prints the mean of t_Aᵀ f(·) − t_Aᵀ f(0) for the mixture, for A
alone and for B alone — what source targets pull towards and what the out term asks the residual to lose.

    python tools/source_evidence.py --pairs 20
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lmaczs import Explainer, datasets  # noqa: E402
from lmaczs.audio import load_audio  # noqa: E402
from lmaczs.mixtures import overlap_parts, splice_parts  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="esc50-eval")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--split", default="A", help="ESC-50 split to draw the clips from (default A)")
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    clap = Explainer.from_pretrained(args.model).clap
    clips = [c for c in datasets.read_dataset("esc50", args.data) if c.split == args.split]
    random.Random(args.seed).shuffle(clips)
    sr = clap.sample_rate
    rows: dict[str, list[tuple[float, float, float]]] = {"splice": [], "overlap": []}
    with torch.no_grad():
        silence = clap.encode_spec(torch.zeros(1, *clap.mask_shape())).embedding[0]
        for a, b in zip(clips[0::2], clips[1::2]):
            if len(rows["splice"]) == args.pairs:
                break
            if a.category == b.category:
                continue
            wa, wb = (clap.fit_window(load_audio(c.path, sr)) for c in (a, b))
            text = clap.embed_text([datasets.eval_prompt(a.category)])[0]
            for kind, parts in (("splice", splice_parts(wa, wb, len(wa) // 2, int(0.05 * sr))),
                                ("overlap", overlap_parts(wa, wb, 0.0))):
                emb = clap.encode_spec(clap.analyze(torch.stack([parts.sum(0), parts[0], parts[1]]))[0]).embedding
                mix, alone_a, alone_b = (emb @ text - silence @ text).tolist()
                rows[kind].append((mix, alone_a, alone_b))
    for kind, r in rows.items():
        mean = [statistics.mean(x[k] for x in r) for k in range(3)]
        higher = statistics.mean(float(x[1] > x[0]) for x in r)
        print(f"{kind} ({len(r)} pairs): evidence for A above silence — mixture {mean[0]:.3f}, A alone "
              f"{mean[1]:.3f}, B alone {mean[2]:.3f}; A alone above the mixture on {higher:.0%} of pairs")


if __name__ == "__main__":
    main()
