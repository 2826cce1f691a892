"""Scale-out benchmark: decoder training steps/s on 1 vs 2 processes, corpus explanation clips/s, peak memory.

    python benchmarks/bench_scale.py                 # tiny backend, then the embedded CLAP's architecture
    python benchmarks/bench_scale.py --models tiny --steps 40 --clips 64

Everything runs side by side in one invocation on the same machine, one thread per process, and is printed as
ratios against the single-process baseline (absolute figures depend on the machine and its load).

- training: the same global batch (--batch) and the same L_ZS groups (batch / 2) in both runs, so 1 and 2 processes
  do the same arithmetic per step (``TrainConfig.group_size``); 2 processes run under ``torchrun`` (gloo).
- corpus: ``explain_corpus`` over real ESC-50 clips with 1-window batches, with --corpus-batch windows per batch,
  and as 2 shards under ``torchrun``; clips/s counts every clip over the slowest shard's time.
- models: ``tiny`` (the seeded test CLAP) and ``embedded``: the embedded CLAP's architecture (aisfx CNN +
  MiniLM, 44.1 kHz, 5 s windows) with fresh projections, so it runs before the packaged model is built; speed and
  memory do not depend on the projection weights. Decoders are fresh (untrained) for the same reason.
- memory: peak resident set (``resource.getrusage().ru_maxrss``) of each process, model and data included.
  tracemalloc is not used: it sees Python objects only, not the tensors that dominate.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ESC50 = ROOT.parent / "shared" / "data" / "esc50"
PROMPTS = ["a dog barking", "rain falling", "a baby crying", "birds chirping", "a clock ticking", "an engine",
           "a door knock", "a cat meowing", "sea waves", "a siren"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def esc50_files(n: int) -> list[tuple[Path, str]]:
    with (ESC50 / "meta" / "esc50.csv").open(newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["filename"])
    return [((ESC50 / "audio" / r["filename"]).with_suffix(".flac"), r["category"].replace("_", " "))
            for r in rows[:n]]


# -- workers (run in their own processes) -----------------------------------------------------------
def worker_train(args: argparse.Namespace) -> None:
    import torch

    from lmaczs.distributed import env_world
    from lmaczs.train import TrainConfig, train

    torch.set_num_threads(1)
    rank = env_world()[0]
    cfg = TrainConfig(clap=args.clap, data=args.data, out=args.out, batch_size=args.batch,
                      group_size=args.batch // 2, max_steps=args.steps, epochs=0, val_fraction=0.0,
                      widths=[16, 32, 48, 64] if args.clap.startswith("tiny") else None, lr=1e-3,
                      checkpoint_every=10 ** 9, log_every=10 ** 9, progress=False)
    summary = train(cfg)
    Path(f"{args.json}.{rank}").write_text(json.dumps({"steps_per_s": summary["steps_per_s"],
                                                       "rss_mb": peak_rss_mb()}))


def worker_corpus(args: argparse.Namespace) -> None:
    import torch

    from lmaczs.corpus import explain_corpus, read_manifest
    from lmaczs.distributed import env_world
    from lmaczs.explain import Explainer

    torch.set_num_threads(1)
    rank, world, _ = env_world()
    ex = Explainer.load(args.clap, args.decoder)
    summary = explain_corpus(ex, read_manifest(args.data), PROMPTS, args.out, batch_size=args.batch,
                             shard=(rank, world), progress=False)
    Path(f"{args.json}.{rank}").write_text(json.dumps({"clips": summary["done"] + summary["errors"],
                                                       "seconds": summary["seconds"], "rss_mb": peak_rss_mb()}))


# -- driver -------------------------------------------------------------------------------------------
def launch(nproc: int, worker: list[str], json_path: Path) -> list[dict]:
    """Run this script as a worker in ``nproc`` processes (torchrun for 2+); return each rank's JSON."""
    me = [str(Path(__file__).resolve())]
    if nproc == 1:
        cmd = [sys.executable, *me]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *me]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd + worker + ["--json", str(json_path)], env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"worker failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    return [json.loads(Path(f"{json_path}.{r}").read_text()) for r in range(nproc)]


def make_decoder(spec: str, out: Path) -> None:
    """A fresh decoder for a backend, saved as a run directory (throughput does not depend on its weights)."""
    import torch

    from lmaczs.checkpoint import save_decoder
    from lmaczs.clap import load_backend
    from lmaczs.decoder import build_decoder

    backend = load_backend(spec)
    torch.manual_seed(0)
    widths = {"widths": [16, 32, 48, 64]} if spec.startswith("tiny") else {}
    save_decoder(out, build_decoder(backend, **widths), {"backend": backend.describe()})


def fresh_embedded(out: Path) -> str | None:
    """The embedded CLAP's architecture with fresh projections, saved to ``out``; its spec (None if unavailable)."""
    try:
        from lmaczs.clap.embedded import EmbeddedClap

        EmbeddedClap().save(out)
    except Exception as exc:  # the module or its assets are not there yet
        print(f"embedded CLAP unavailable ({type(exc).__name__}: {exc}); measuring tiny only")
        return None
    return f"embedded:{out}"


def bench_model(name: str, clap: str, args: argparse.Namespace, tmp: Path) -> list[tuple[str, str, str, str]]:
    """Rows ``(what, 1 process, 2 processes / variant, ratio)`` for one backend."""
    tag = name
    files = esc50_files(max(args.clips, 2 * args.batch))
    data = tmp / f"{tag}_captions.csv"
    with data.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "caption"])
        w.writerows([str(p), f"the sound of {c}"] for p, c in files)
    rows = []
    train_args = ["--worker", "train", "--clap", clap, "--data", str(data), "--batch", str(args.batch),
                  "--steps", str(args.steps)]
    one = launch(1, train_args + ["--out", str(tmp / f"{tag}_t1")], tmp / f"{tag}_t1.json")
    two = launch(2, train_args + ["--out", str(tmp / f"{tag}_t2")], tmp / f"{tag}_t2.json")
    s1, s2 = one[0]["steps_per_s"], min(r["steps_per_s"] for r in two)
    rows.append((f"[{name}] train steps/s (global batch {args.batch}, groups of {args.batch // 2})",
                 f"{s1:.2f}", f"{s2:.2f} (2 procs)", f"{s2 / s1:.2f}x"))
    m1, m2 = one[0]["rss_mb"], max(r["rss_mb"] for r in two)
    rows.append((f"[{name}] train peak RSS per process (MB)", f"{m1:.0f}", f"{m2:.0f} (2 procs)", f"{m2 / m1:.2f}x"))

    manifest = tmp / f"{tag}_manifest.csv"
    manifest.write_text("path\n" + "".join(f"{p}\n" for p, _ in files[:args.clips]))
    make_decoder(clap, tmp / f"{tag}_decoder")
    extra = ["--decoder", str(tmp / f"{tag}_decoder")]
    runs = {}
    for label, nproc, batch in (("b1", 1, 1), ("bN", 1, args.corpus_batch), ("2p", 2, args.corpus_batch)):
        out = tmp / f"{tag}_c_{label}"
        res = launch(nproc, ["--worker", "corpus", "--clap", clap, "--data", str(manifest), "--out", str(out),
                             "--batch", str(batch), *extra], tmp / f"{tag}_c_{label}.json")
        clips = sum(r["clips"] for r in res)
        runs[label] = (clips / max(r["seconds"] for r in res), max(r["rss_mb"] for r in res))
    b1, bn, p2 = runs["b1"], runs["bN"], runs["2p"]
    rows.append((f"[{name}] corpus clips/s, {args.clips} clips: batch 1 vs {args.corpus_batch} windows",
                 f"{b1[0]:.2f}", f"{bn[0]:.2f} (batch {args.corpus_batch})", f"{bn[0] / b1[0]:.2f}x"))
    rows.append((f"[{name}] corpus clips/s: 1 vs 2 shards (batch {args.corpus_batch})", f"{bn[0]:.2f}",
                 f"{p2[0]:.2f} (2 procs)", f"{p2[0] / bn[0]:.2f}x"))
    rows.append((f"[{name}] corpus peak RSS per process (MB): batch 1 / batch {args.corpus_batch} / 2 shards",
                 f"{b1[1]:.0f}", f"{bn[1]:.0f} / {p2[1]:.0f}", f"{bn[1] / b1[1]:.2f}x / {p2[1] / b1[1]:.2f}x"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=["train", "corpus"])
    ap.add_argument("--clap", default="tiny")
    ap.add_argument("--data")
    ap.add_argument("--out")
    ap.add_argument("--decoder")
    ap.add_argument("--json")
    ap.add_argument("--batch", type=int, default=8, help="training: global batch")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--corpus-batch", type=int, default=16)
    ap.add_argument("--models", nargs="+", choices=["tiny", "embedded"], default=["tiny", "embedded"])
    ap.add_argument("--embedded-batch", type=int, default=4, help="embedded: global training batch")
    ap.add_argument("--embedded-steps", type=int, default=4, help="embedded: training steps")
    ap.add_argument("--embedded-clips", type=int, default=16, help="embedded: corpus clips")
    args = ap.parse_args()
    if args.worker == "train":
        return worker_train(args)
    if args.worker == "corpus":
        return worker_corpus(args)

    if not (ESC50 / "meta" / "esc50.csv").is_file():
        raise SystemExit(f"real ESC-50 audio not found at {ESC50}")
    print(f"cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} at start; models {args.models}",
          flush=True)
    t0 = time.perf_counter()
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="lmaczs_bench_") as tmp:
        for name in args.models:
            if name == "tiny":
                rows += bench_model(name, "tiny", args, Path(tmp))
                continue
            spec = fresh_embedded(Path(tmp) / "embedded_clap")
            if spec:
                big = argparse.Namespace(**{**vars(args), "batch": args.embedded_batch,
                                            "steps": args.embedded_steps, "clips": args.embedded_clips})
                rows += bench_model(name, spec, big, Path(tmp))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'baseline':>10}  {'scaled':>26}  ratio")
    for what, base, scaled, ratio in rows:
        print(f"{what:<{width}}  {base:>10}  {scaled:>26}  {ratio}")
    print(f"\n{time.perf_counter() - t0:.0f} s in all; load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
