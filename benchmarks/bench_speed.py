"""Per-clip cost of classify, LMAC-ZS explain and every baseline, side by side in one process, as ratios to
classify; peak memory of explain; and the projected wall time of the full ``lmac-zs evaluate`` run.

    python benchmarks/bench_speed.py                        # the embedded esc50-eval model (if built)
    python benchmarks/bench_speed.py --standin              # aisfx CLAP with untrained projections (same cost)
    python benchmarks/bench_speed.py --clap tiny --decoder runs/tiny --threads 1

"eval" is what ``lmac-zs evaluate`` spends per clip and method: the mask and the masked-in / masked-out
forwards; "curves" the deletion/insertion curves (``--curve-steps``) on top. The projection is
``clips × (conditions × (classify + Σ eval) + curve_conditions × Σ curves)`` (curves: clean only by default).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import torch
from _timing import best_time  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from lmaczs.evaluation.faithfulness import classify_batch, score_method
from lmaczs.evaluation.methods import ALL_METHODS, DEFAULT_PRESET, LABELS, PRESETS, build_methods

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "esc50"


def timed(fn) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of this process)`` of one call. CPU time does not grow when other jobs
    compete for the cores, so it is the robust figure on a shared machine."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0




def _hwm_kib() -> int | None:
    try:
        return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))
    except (OSError, AttributeError):
        return None


def peak_memory_mib(fn, device: torch.device) -> float | None:
    """Extra peak memory of ``fn()`` over what was resident before it: CUDA allocator peak on a GPU, else the
    process's peak RSS (Linux: /proc/self/clear_refs resets the high-water mark). None where unsupported."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2 ** 20
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    before = _hwm_kib()
    fn()
    after = _hwm_kib()
    return None if before is None or after is None else (after - before) / 1024


def load(args):
    from lmaczs.decoder import build_decoder

    if args.standin:
        from lmaczs.clap.embedded import EmbeddedClap

        backend = EmbeddedClap(name="standin")  # the esc50-eval architecture, untrained projections
        backend.eval()
        return backend, build_decoder(backend).eval(), "aisfx stand-in (untrained projections), untrained decoder"
    from lmaczs.explain import Explainer

    if args.decoder:
        ex = Explainer.load(args.clap, args.decoder)
        return ex.clap, ex.decoder, f"{ex.clap.spec} + {args.decoder}"
    try:
        ex = Explainer.from_pretrained(args.clap or "esc50-eval")
    except Exception as exc:  # not built yet: say how to measure anyway
        sys.exit(f"{exc}\n(use --standin for the same architecture with untrained weights)")
    return ex.clap, ex.decoder, f"embedded {args.clap or 'esc50-eval'}"


def clips(backend, n: int) -> torch.Tensor:
    """``(n, num_samples)`` real split-B clips when the shared data is there, else seeded noise bursts."""
    if (DATA / "meta" / "splits.csv").is_file():
        from lmaczs.audio import load_audio
        from lmaczs.datasets import read_esc50, select

        chosen = select(read_esc50(DATA), splits=["B"], targets="odd")[:n]
        return torch.stack([backend.fit_window(load_audio(c.path, backend.sample_rate)) for c in chosen])
    g = torch.Generator().manual_seed(0)
    return 0.1 * torch.randn(n, backend.num_samples, generator=g)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clap", help="backend spec (default: the embedded esc50-eval model)")
    ap.add_argument("--decoder", help="decoder run directory")
    ap.add_argument("--standin", action="store_true", help="aisfx CLAP + decoder with untrained weights")
    ap.add_argument("--batch", type=int, default=8, help="clips per batch (as lmac-zs evaluate --batch-size)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--methods", default=",".join(ALL_METHODS))
    ap.add_argument("--curve-steps", type=int, default=4)
    ap.add_argument("--curve-conditions", type=int, default=1, help="conditions with curves (default: clean only)")
    ap.add_argument("--clips", type=int, default=193,
                    help="clips of the projected run (ESC-50 B: 193, its odd targets 94; UrbanSound8K 7-8: 229)")
    ap.add_argument("--conditions", type=int, default=4, help="conditions of the projected run")
    ap.add_argument("--baseline-settings", choices=PRESETS, default=DEFAULT_PRESET,
                    help="baseline preset, as lmac-zs evaluate --baseline-settings (default: %(default)s)")
    ap.add_argument("--pairings", type=int, default=3,
                    help="localisation pairings of the projected run (--localization; 0: without)")
    ap.add_argument("--separation", type=int, default=1, choices=[0, 1],
                    help="include the separation benchmark in the projection (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    backend, decoder, what = load(args)
    backend, decoder = backend.to(device), decoder.to(device)
    keys = [k.strip() for k in args.methods.split(",") if k.strip()]
    methods = build_methods(keys, decoder, preset=args.baseline_settings)
    prompts = [f"this is the sound of class {i}" for i in range(50)]  # 50 prompts, like the evaluation
    with torch.no_grad():
        text = backend.embed_text(prompts).to(device)
        x, _ = backend.analyze(backend.prepare(clips(backend, args.batch).to(device)))
        t, f = backend.mask_shape()
        from lmaczs.evaluation.metrics import zero_shot_probs

        p_zero = zero_shot_probs(backend, torch.zeros(1, t, f, device=device), text)
    b = x.shape[0]
    print(f"{what}; device {device}, {args.threads} thread(s), batch {b}, mask grid {tuple(x.shape[1:])}")

    def classify():
        with torch.no_grad():
            return classify_batch(backend, x, text)

    enc, p, c = classify()
    t_cls = best_time(classify, args.repeats) / b
    cpu_cls = timed(classify)[1] / b
    rows = [("classify", t_cls, None)]

    def explain():
        with torch.no_grad():
            e, _, cc = classify_batch(backend, x, text)
            return methods["lmaczs"](backend, x, text, cc, hidden=e.hidden) if "lmaczs" in methods else None

    mem = peak_memory_mib(explain, device)
    everything = list(range(b))
    total_eval = total_curves = cpu_eval = cpu_curves = total_mask = 0.0
    for key, method in methods.items():
        if key == "lmaczs":
            t_mask = best_time(explain, args.repeats) / b  # classify + decoder: what `lmac-zs explain` does
        else:
            t_mask = best_time(lambda: method(backend, x, text, c), args.repeats) / b
        t_eval, c_eval = (v / b for v in timed(
            lambda: score_method(backend, method, everything, x, enc, p, c, text, p_zero, 0)))
        t_curves = c_curves = 0.0
        if args.curve_steps > 0:
            w, cpu = timed(lambda: score_method(backend, method, everything, x, enc, p, c, text, p_zero,
                                                args.curve_steps))
            t_curves, c_curves = max(0.0, w / b - t_eval), max(0.0, cpu / b - c_eval)
        total_eval += t_eval
        total_mask += t_mask
        total_curves += t_curves
        cpu_eval += c_eval
        cpu_curves += c_curves
        rows.append((LABELS.get(key, key), t_mask, (t_eval, t_curves)))
    print(f"{'':>18} {'ms/clip':>9} {'× classify':>11} {'eval s/clip':>12} {'curves s/clip':>14}")
    for name, t_m, t_e in rows:
        ev = f"{t_e[0]:12.3f} {t_e[1]:14.3f}" if t_e is not None else ""
        print(f"{name:>18} {1e3 * t_m:9.1f} {t_m / t_cls:11.1f} {ev}")
    if mem is not None:
        print(f"peak memory of explain (batch {b}): +{mem:.0f} MiB over the loaded model "
              f"({'CUDA allocator' if device.type == 'cuda' else 'process peak RSS'})")
    per_item = total_eval + t_cls
    projected = args.clips * (args.conditions * per_item + args.curve_conditions * total_curves)
    cpu = args.clips * (args.conditions * (cpu_eval + cpu_cls) + args.curve_conditions * cpu_curves)
    print(f"projected lmac-zs evaluate: {per_item:.2f} s per (clip, condition) × {args.clips} clips × "
          f"{args.conditions} conditions + {total_curves:.2f} s of curves per clip × {args.curve_conditions} "
          f"condition(s) ({args.curve_steps} steps) = {projected / 60:.1f} min wall at this machine's load; "
          f"{cpu / 60:.1f} CPU-min of work (≈ {cpu / 60 / args.threads:.1f} min on {args.threads} free core(s))")
    extra = args.clips * (args.pairings + args.separation) * (total_mask + t_cls)
    print(f"+ localisation ({args.pairings} pairings) and separation ({args.separation}): one mask per method and "
          f"item, {total_mask + t_cls:.2f} s per item → {extra / 60:.1f} min more wall at this load "
          f"(baselines: {args.baseline_settings} settings)")


if __name__ == "__main__":
    main()
