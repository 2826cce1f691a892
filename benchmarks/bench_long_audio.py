"""Long-audio benchmark: peak memory and time per minute of audio of ``lmac-zs explain`` on 1, 10 and 30 minutes.

    python benchmarks/bench_long_audio.py                       # 1, 10, 30 min, the embedded default model
    python benchmarks/bench_long_audio.py --minutes 1 10 --also-in-memory 1 10

Each length runs in a fresh process (one torch thread) that loads ``Explainer.from_pretrained()`` and does what
the CLI does: ``explain`` (the top prompt, so long clips take the spilled two-pass path) then
``save(..., labels=True)`` (wav, png, json, Audacity labels, timeline CSV). Peak memory is that process's
``ru_maxrss`` (``resource.getrusage``; model, audio and outputs included). Time per minute is explain + save over
the audio's length, as wall time and as the process's CPU time (user + system: less sensitive to other jobs on a
shared machine); ratios are against the first length given. Lengths up to ``--short`` minutes run
``--repeats`` times and keep their fastest run (which can only make the ratios of the long runs look worse).
Clips of 60 s and less take the in-memory path (``Explainer.stream_over_s``), longer ones the streamed path;
``--also-in-memory M`` also times the in-memory path at M minutes (``stream=False``, the code before streaming) and
``--also-streamed M`` the streamed path at M.

The audio is synthetic, deterministic and written as 16-bit FLAC at 44.1 kHz: a noise floor with sound events
(harmonic tones with decays like bells, noise bursts like rain, chirps, clicks like knocking) every 1-6 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SR = 44100
PROMPTS = ["dog barking", "rain", "a crying baby", "church bells"]
BLOCK_S = 10


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def synth_block(k: int):
    """Block ``k`` (10 s) of the synthetic clip: deterministic per block, so any length is written block by block."""
    import numpy as np

    rng = np.random.default_rng(1000 + k)
    n = BLOCK_S * SR
    t = np.arange(n) / SR
    out = 0.01 * rng.standard_normal(n)  # noise floor (-40 dBFS)
    pos = rng.uniform(0, 2.0)
    while pos < BLOCK_S - 0.5:
        kind = rng.integers(4)
        dur = float(rng.uniform(0.3, 2.5))
        a, b = int(pos * SR), min(n, int((pos + dur) * SR))
        tt = t[a:b] - t[a]
        env = np.exp(-tt * rng.uniform(1.5, 6.0))
        if kind == 0:  # bell-like partials
            f0 = rng.uniform(200, 900)
            ev = sum(np.sin(2 * np.pi * f0 * h * tt) / h for h in (1, 2.01, 2.98, 4.2))
        elif kind == 1:  # rain-like burst: noise
            ev = rng.standard_normal(b - a) * 0.6
            env = np.ones_like(tt) * np.minimum(1, tt / 0.05)
        elif kind == 2:  # chirp
            f0, f1 = rng.uniform(300, 1500), rng.uniform(1500, 6000)
            ev = np.sin(2 * np.pi * (f0 * tt + (f1 - f0) * tt ** 2 / (2 * dur)))
        else:  # clicks
            ev = np.zeros(b - a)
            ev[:: max(1, int(SR * rng.uniform(0.08, 0.3)))] = 3.0
        out[a:b] += rng.uniform(0.05, 0.4) * ev * env
        pos += dur + float(rng.uniform(1.0, 6.0))
    return np.clip(out, -1, 1).astype(np.float32)


def write_clip(path: Path, minutes: float) -> None:
    import soundfile as sf

    blocks = int(round(minutes * 60 / BLOCK_S))
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, format="FLAC", subtype="PCM_16") as fh:
        for k in range(blocks):
            fh.write(synth_block(k))


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    from lmaczs.explain import Explainer

    ex = Explainer.from_pretrained()
    rss_model = peak_rss_mb()
    stream = {"auto": None, "memory": False, "stream": True}[args.mode]

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    t0, c0 = time.perf_counter(), cpu()
    e = ex.explain(args.file, PROMPTS, stream=stream)
    t1, c1 = time.perf_counter(), cpu()
    e.save(args.out, labels=True)
    t2, c2 = time.perf_counter(), cpu()
    print(json.dumps({"explain_s": t1 - t0, "save_s": t2 - t1, "explain_cpu_s": c1 - c0, "cpu_s": c2 - c0,
                      "rss_model_mb": rss_model, "rss_peak_mb": peak_rss_mb(),
                      "streamed": bool(e.extra.get("streamed")), "prediction": e.prediction,
                      "segments": len(e.labels())}))


def run_one(path: Path, out: Path, mode: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, __file__, "--worker", "--file", str(path), "--out", str(out), "--mode", mode],
                         env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"worker failed ({mode}, {path.name}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 30])
    ap.add_argument("--also-in-memory", type=float, nargs="*", default=[], metavar="M")
    ap.add_argument("--also-streamed", type=float, nargs="*", default=[], metavar="M")
    ap.add_argument("--short", type=float, default=1.0, help="lengths up to this many minutes are repeated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--file"), ap.add_argument("--out"), ap.add_argument("--mode", default="auto")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    runs = [(m, "auto") for m in args.minutes] + [(m, "memory") for m in args.also_in_memory] + \
        [(m, "stream") for m in args.also_streamed]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-long-") as tmp:
        for m in sorted({m for m, _ in runs}):
            write_clip(Path(tmp) / f"clip-{m:g}min.flac", m)
        loads = [os.getloadavg()[0]]
        for m, mode in runs:
            tries = []
            for _ in range(args.repeats if m <= args.short else 1):
                r = run_one(Path(tmp) / f"clip-{m:g}min.flac", Path(tmp) / f"out-{m:g}-{mode}", mode)
                r.update(minutes=m, mode=mode, total_s=r["explain_s"] + r["save_s"])
                print(json.dumps(r), file=sys.stderr, flush=True)
                tries.append(r)
            best = min(tries, key=lambda t: t["total_s"])
            best["cpu_s"] = min(t["cpu_s"] for t in tries)
            best["explain_cpu_s"] = min(t["explain_cpu_s"] for t in tries)
            best["rss_peak_mb"] = max(t["rss_peak_mb"] for t in tries)
            rows.append(best)
            loads.append(os.getloadavg()[0])
    base = rows[0]
    print(f"load average (1 min) before and after each length: {', '.join(f'{x:.1f}' for x in loads)}; "
          "one torch thread per process")
    print("| audio | path | explain (s) | save (s) | wall s / audio min | ratio | CPU s / audio min | ratio | "
          "explain CPU s / audio min | ratio | peak RSS (MB) | RSS after model load (MB) | label spans |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        path = "streamed" if r["streamed"] else "in memory"
        m = r["minutes"]
        wall, cpu, ecpu = r["total_s"] / m, r["cpu_s"] / m, r["explain_cpu_s"] / m
        bw, bc, be = (base["total_s"] / base["minutes"], base["cpu_s"] / base["minutes"],
                      base["explain_cpu_s"] / base["minutes"])
        print(f"| {m:g} min | {path} | {r['explain_s']:.1f} | {r['save_s']:.1f} | {wall:.2f} | {wall / bw:.2f}× | "
              f"{cpu:.2f} | {cpu / bc:.2f}× | {ecpu:.2f} | {ecpu / be:.2f}× | {r['rss_peak_mb']:.0f} | "
              f"{r['rss_model_mb']:.0f} | {r['segments']} |")


if __name__ == "__main__":
    main()
