"""Choose the LMAC-ZS decoder's settings on the validation split *inside* the training data (never on split B).

Each grid entry ``baseline,λ1,λ2,batch,lr`` trains a decoder with ``lmaczs.train`` (same data, seed and validation
split as the final run), is scored after each of ``--stops`` steps (training resumes exactly between stops), and
prints one Markdown row per stop. Scores on the held-out validation clips: zero-shot prediction ĉ among all 50
ESC-50 prompts; AI / AD / FF / Fid-In of the mask for ĉ; its mean (MM) against the mask of one unrelated class
prompt drawn with a fixed seed ("pred > unrel.": share of clips where ĉ's mask is larger) and against the masks of
all 49 other prompts ("> others": per clip, the share of the other prompts whose mask is smaller; 0.5 = blind).

    python tools/tune_decoder.py --clap esc50-eval --stops 250 500 1000 --grid silence,0.1,0,4,2e-4
    python tools/tune_decoder.py --score-runs runs/esc50-eval-decoder      # score finished runs only

Machines without the MiniLM package or the whole dataset (a GPU box) run from a pack made where both are:
``--pack DIR`` copies the clips of ``--splits/--targets`` with their metadata to ``DIR/esc50`` and writes the MiniLM
embeddings of every caption and prompt (and the 50 class names) to ``DIR/text_table.pt``; then run there with
``--data DIR/esc50 --text-table DIR/text_table.pt --device cuda``.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
from pathlib import Path

import torch
from torch import nn

from lmaczs import datasets
from lmaczs.checkpoint import load_decoder
from lmaczs.clap import load_backend
from lmaczs.data import load_items, load_windows, split_by_group
from lmaczs.errors import PromptError
from lmaczs.evaluation.metrics import per_example_metrics, summarize, zero_shot_probs
from lmaczs.train import TrainConfig, train

COLUMNS = ["acc", "AI", "AD", "FF", "Fid-In", "MM", "MM-unrelated", "larger", "above-others"]


@torch.no_grad()
def score(backend, decoder, waves: torch.Tensor, labels: list[int], prompts: list[str], seed: int) -> dict:
    """Mean validation scores of one decoder (see the module docstring)."""
    text = backend.embed_text(prompts)
    device = text.device
    rng = random.Random(seed)
    rows: dict[str, list[torch.Tensor]] = {}
    for k in range(0, waves.shape[0], 8):
        x, _ = backend.analyze(backend.prepare(waves[k:k + 8].to(device)))
        enc = backend.encode_spec(x)
        p = torch.softmax(backend.logit_scale * enc.embedding @ text.T, -1)
        c = p.argmax(-1)
        m = decoder(text[c], enc.hidden)
        other = torch.tensor([rng.choice([j for j in range(len(prompts)) if j != int(ci)]) for ci in c], device=device)
        m_other = decoder(text[other], enc.hidden)
        per = per_example_metrics(p, zero_shot_probs(backend, m * x, text), zero_shot_probs(backend, (1 - m) * x, text),
                                  c, m)
        per["MM-unrelated"] = m_other.flatten(1).mean(1)
        per["larger"] = (per["MM"] > per["MM-unrelated"]).float()
        per["above-others"] = torch.stack([share_below(decoder, text, [h[b:b + 1] for h in enc.hidden], int(c[b]))
                                           for b in range(x.shape[0])])
        per["acc"] = (c == torch.tensor(labels[k:k + 8], device=device)).float()
        for key, v in per.items():
            rows.setdefault(key, []).append(v)
    return summarize(rows)


def share_below(decoder, text: torch.Tensor, hidden: list[torch.Tensor], c: int) -> torch.Tensor:
    """Share of the prompts other than ``c`` whose mask mean is below prompt ``c``'s, for one clip."""
    means = decoder(text, [h.expand(text.shape[0], *h.shape[1:]) for h in hidden]).flatten(1).mean(1)
    others = torch.cat([means[:c], means[c + 1:]])
    return (others < means[c]).float().mean()


class TextTable(nn.Module):
    """Stands in for MiniLM: precomputed ``(P, 384)`` sentence embeddings looked up by prompt."""

    def __init__(self, path: str):
        super().__init__()
        table = torch.load(path)
        self.index = {t: k for k, t in enumerate(table["texts"])}
        self.emb = table["emb"]
        self.classes: list[str] = table["classes"]

    def forward(self, prompts) -> torch.Tensor:
        missing = [p for p in prompts if p not in self.index]
        if missing:
            raise PromptError(f"{missing[0]!r} is not in the text table")
        return self.emb[[self.index[p] for p in prompts]]


def pack(data: str, splits: list[str], targets: str, out: Path) -> None:
    """Copy the selected clips and their metadata to ``out/esc50``; MiniLM embeddings → ``out/text_table.pt``."""
    from lmaczs.clap.minilm import MiniLmEncoder

    clips = datasets.read_esc50(data)
    keep = {c.filename for c in datasets.select(clips, splits=splits, targets=targets)}
    (out / "esc50" / "audio").mkdir(parents=True, exist_ok=True)
    (out / "esc50" / "meta").mkdir(exist_ok=True)
    for name in ("esc50.csv", "splits.csv"):
        with open(Path(data) / "meta" / name, newline="") as src:
            rows = list(csv.DictReader(src))
        with open(out / "esc50" / "meta" / name, "w", newline="") as dst:
            writer = csv.DictWriter(dst, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(r for r in rows if r["filename"] in keep)
    for c in clips:
        if c.filename in keep:
            shutil.copy(c.path, out / "esc50" / "audio" / Path(c.path).name)
    names = datasets.class_names(clips)
    texts = sorted({c for n in names for c in datasets.captions_for(n)} | {datasets.eval_prompt(n) for n in names} | {"a"})
    torch.save({"texts": texts, "classes": names, "emb": MiniLmEncoder()(texts).float().cpu()},
               out / "text_table.pt")
    print(f"{len(keep)} clips and {len(texts)} texts → {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clap", default="esc50-eval")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "esc50"))
    ap.add_argument("--splits", nargs="+", default=["A"])
    ap.add_argument("--targets", default="even")
    ap.add_argument("--stops", type=int, nargs="+", default=[250, 500, 1000], help="score after these steps")
    ap.add_argument("--grid", nargs="+", default=["none,0.2,0.1,4,2e-4", "silence,0.1,0,4,2e-4"],
                    help="baseline,λ1,λ2,batch,lr entries")
    ap.add_argument("--out", default="/tmp/lmaczs-tune")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write every row to this JSON file")
    ap.add_argument("--text-table", help="MiniLM embeddings and class names written by --pack (no MiniLM needed)")
    ap.add_argument("--pack", metavar="DIR", help="write the selected clips and the text table to DIR, then exit")
    ap.add_argument("--score-runs", nargs="+", help="only score these existing run directories (no training)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.pack:
        pack(args.data, args.splits, args.targets, Path(args.pack))
        return
    clips = {c.path: c for c in datasets.read_esc50(args.data)}
    names = datasets.class_names(clips.values())
    if args.text_table:
        from lmaczs.clap.embedded import EmbeddedClap

        table = TextTable(args.text_table)
        backend = EmbeddedClap.from_package(args.clap, text_encoder=table)
        names = table.classes  # a pack holds some classes' clips only; the prompts are all 50
    else:
        backend = load_backend(args.clap)
    backend = backend.to(args.device)
    items = load_items(args.data, splits=args.splits, targets=args.targets)
    _, val = split_by_group(items, TrainConfig.val_fraction, 0)
    waves = load_windows(val, backend, progress=False)
    labels = [clips[it.path].target for it in val]
    prompts = [datasets.eval_prompt(n) for n in names]
    print(f"{len(val)} validation clips, device {args.device}")
    print("| run | baseline | λ1 | λ2 | batch | lr | steps | acc | AI | AD | FF | Fid-In | MM (pred) | MM (unrel.) "
          "| pred > unrel. | > others |")
    print("|" + "---|" * 16)
    rows = []

    def report(run: Path, extra: dict | None = None) -> None:
        decoder, meta = load_decoder(run)
        decoder = decoder.to(args.device).eval()
        tc = meta["train_config"]
        s = score(backend, decoder, waves, labels, prompts, seed=0)
        rows.append({"run": run.name, "baseline": tc.get("baseline", "none"), "step": meta["step"], **tc,
                     **{k: s[k] for k in COLUMNS}, **(extra or {})})
        print(f"| {run.name} | {tc.get('baseline', 'none')} | {tc['lambda1']} | {tc['lambda2']} | {tc['batch_size']} | "
              f"{tc['lr']} | {meta['step']} | {s['acc']:.2f} | {s['AI']:.1f} | {s['AD']:.1f} | {s['FF']:.3f} | "
              f"{s['Fid-In']:.2f} | {s['MM']:.3f} | {s['MM-unrelated']:.3f} | {s['larger']:.0%} | "
              f"{s['above-others']:.2f} |", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))

    if args.score_runs:
        for run in args.score_runs:
            report(Path(run))
        return
    for entry in args.grid:
        base, l1, l2, bs, lr = entry.split(",")
        out = Path(args.out) / entry.replace(",", "_")
        for stop in args.stops:
            cfg = TrainConfig(clap=args.clap, data=args.data, out=str(out), splits=args.splits, targets=args.targets,
                              epochs=1000, max_steps=stop, batch_size=int(bs), lr=float(lr), lambda1=float(l1),
                              lambda2=float(l2), baseline=base, progress=False, checkpoint_every=10**6,
                              device=args.device)
            summary = train(cfg, resume=(out / "checkpoint.safetensors").exists(), backend=backend)
            report(out, {"steps_per_s": summary["steps_per_s"]})


if __name__ == "__main__":
    main()
