"""Per-clip cost of each saliency baseline, as a ratio to one plain forward pass, measured side by side.

    python benchmarks/baselines_cost.py [--backend tiny] [--batch 8] [--repeats 3]
"""

from __future__ import annotations

import argparse

import torch
from _timing import best_time  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from lmaczs.baselines import METHODS, get_method
from lmaczs.clap import load_backend




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="tiny")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    backend = load_backend(args.backend)
    g = torch.Generator().manual_seed(0)
    x, _ = backend.analyze(0.1 * torch.randn(args.batch, backend.num_samples, generator=g))
    te = backend.embed_text([f"prompt {i}" for i in range(10)])
    target = torch.arange(args.batch) % 10
    with torch.no_grad():
        fwd = best_time(lambda: backend.encode_spec(x), args.repeats) / args.batch
    print(f"backend {args.backend}, batch {args.batch}, {args.threads} thread(s), mask grid {tuple(x.shape[1:])}")
    print(f"{'forward':>12}: {1e3 * fwd:8.2f} ms/clip   1.0x")
    for name in METHODS:
        method = get_method(name)
        t = best_time(lambda: method(backend, x, te, target), args.repeats) / args.batch
        print(f"{name:>12}: {1e3 * t:8.2f} ms/clip {t / fwd:6.1f}x   {method!r}")


if __name__ == "__main__":
    main()
