"""Choose λ1 / λ2 of an LMAC-ZS decoder on the validation split *inside* the training data (never on split B).

For each (λ1, λ2) it trains a decoder with ``lmaczs.train`` (same data, seed and validation split as the final
run) and scores the held-out validation clips of that split: zero-shot prediction ĉ among all 50 ESC-50 prompts,
the mask for ĉ and for an unrelated class prompt, and AI / AD / Fid-In / FF / mask means. Prints a Markdown table.

    python tools/tune_decoder.py --clap esc50-eval --splits A --targets even --steps 150 \
        --grid 0.05,1 0.1,1 0.2,1 0.1,0
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from lmaczs import esc50
from lmaczs.checkpoint import load_decoder
from lmaczs.clap import load_backend
from lmaczs.data import load_items, load_windows, split_by_group
from lmaczs.metrics import per_example_metrics, summarize, zero_shot_probs
from lmaczs.train import TrainConfig, train


@torch.no_grad()
def score(backend, decoder, waves: torch.Tensor, labels: list[int], prompts: list[str], seed: int) -> dict:
    text = backend.embed_text(prompts)
    rng = random.Random(seed)
    rows: dict[str, list[torch.Tensor]] = {}
    for k in range(0, waves.shape[0], 8):
        x, _ = backend.analyze(backend.prepare(waves[k:k + 8]))
        enc = backend.encode_spec(x)
        p = torch.softmax(backend.logit_scale * enc.embedding @ text.T, -1)
        c = p.argmax(-1)
        m = decoder(text[c], enc.hidden)
        other = torch.tensor([rng.choice([j for j in range(len(prompts)) if j != int(ci)]) for ci in c])
        m_other = decoder(text[other], enc.hidden)
        per = per_example_metrics(p, zero_shot_probs(backend, m * x, text), zero_shot_probs(backend, (1 - m) * x, text),
                                  c, m)
        per["MM-unrelated"] = m_other.flatten(1).mean(1)
        per["acc"] = (c == torch.tensor(labels[k:k + 8])).float()
        for key, v in per.items():
            rows.setdefault(key, []).append(v)
    return summarize(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clap", default="esc50-eval")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "esc50"))
    ap.add_argument("--splits", nargs="+", default=["A"])
    ap.add_argument("--targets", default="even")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--grid", nargs="+", default=["0.05,1", "0.1,1", "0.2,1"], help="λ1,λ2 pairs")
    ap.add_argument("--out", default="/tmp/lmaczs-tune")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--score-runs", nargs="+", help="only score these existing run directories (no training)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    backend = load_backend(args.clap)
    clips = {c.path: c for c in esc50.read_esc50(args.data)}
    items = load_items(args.data, splits=args.splits, targets=args.targets)
    _, val = split_by_group(items, TrainConfig.val_fraction, 0)
    waves = load_windows(val, backend, progress=False)
    labels = [clips[it.path].target for it in val]
    prompts = [esc50.eval_prompt(n) for n in esc50.class_names(clips.values())]
    print(f"{len(val)} validation clips; {args.steps} steps per setting")
    print("| λ1 | λ2 | val L_ZS | acc | AI | AD | FF | Fid-In | MM (pred) | MM (unrelated) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    if args.score_runs:
        for run in args.score_runs:
            decoder, meta = load_decoder(Path(run))
            tc = meta["train_config"]
            s = score(backend, decoder, waves, labels, prompts, seed=0)
            print(f"| {tc['lambda1']} | {tc['lambda2']} | step {meta['step']}, lr {tc['lr']} | {s['acc']:.2f} | "
                  f"{s['AI']:.1f} | {s['AD']:.1f} | {s['FF']:.3f} | {s['Fid-In']:.2f} | {s['MM']:.3f} | "
                  f"{s['MM-unrelated']:.3f} |", flush=True)
        return
    for pair in args.grid:
        l1, l2 = map(float, pair.split(","))
        out = Path(args.out) / f"l1_{l1}_l2_{l2}"
        cfg = TrainConfig(clap=args.clap, data=args.data, out=str(out), splits=args.splits, targets=args.targets,
                          epochs=1000, max_steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                          lambda1=l1, lambda2=l2, progress=False, checkpoint_every=10_000)
        summary = train(cfg, resume=(out / "checkpoint.safetensors").exists(), backend=backend)
        decoder, _ = load_decoder(out)
        s = score(backend, decoder, waves, labels, prompts, seed=0)
        val_loss = summary["val_last"]["total"] if summary["val_last"] else float("nan")
        print(f"| {l1} | {l2} | {val_loss:.4f} | {s['acc']:.2f} | {s['AI']:.1f} | {s['AD']:.1f} | {s['FF']:.3f} | "
              f"{s['Fid-In']:.2f} | {s['MM']:.3f} | {s['MM-unrelated']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
