#!/usr/bin/env python
"""Does the decoder follow the prompt? Localisation, selectivity, separation and the mask-size sanity check, on
held-out audio only (ESC-50 B, UrbanSound8K folds 7–8, LJ001-0101…0150), LMAC-ZS beside the CAM baselines.

    python tools/mixture_report.py --model esc50-eval --json docs/results/mixture-report.json
    python tools/mixture_report.py --model esc50-eval --decoder runs/x --methods lmaczs --n 40   # another decoder

- **localisation**: an ESC-50 B clip A spliced with a partner (ESC-50 B of another class, UrbanSound8K 7–8, or
  speech), the loudest half of each at equal RMS, A first on even items; every method explains A's prompt; score:
  the share of mask energy inside A's span (chance ≈ 0.5).
- **selectivity** (clean held-out clips): mask mean for an unrelated class prompt ÷ for the true prompt (ratio of
  means), and per clip the share of the other prompts whose mask is smaller than the predicted prompt's.
- **separation** (ESC-50 B pairs of different classes overlapped at 0 dB): SI-SDR of the explanation of A's prompt
  against A, minus that of the mixture (SI-SDRi); the residual against B; the ideal ratio mask is the ceiling.
- **sanity**: Spearman ρ between mask mean and prompt–audio similarity over (clip, prompt) pairs.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lmaczs import Explainer, datasets  # noqa: E402
from lmaczs.audio import load_audio  # noqa: E402
from lmaczs.evaluation.conditions import mix_at_snr  # noqa: E402
from lmaczs.evaluation.localization import energy_share, region_frames, splice  # noqa: E402
from lmaczs.evaluation.methods import LABELS, build_methods, parse_methods  # noqa: E402
from lmaczs.evaluation.separation import ideal_ratio_mask, si_sdr  # noqa: E402


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.argsort().argsort().double()
    rb = b.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def mean(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return sum(xs) / len(xs) if xs else float("nan")


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="esc50-eval")
    ap.add_argument("--decoder", help="a run directory to report instead of the model's shipped decoder")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--methods", default="lmaczs,gradcam,gradcam++,scorecam")
    ap.add_argument("--n", type=int, default=60, help="items per localisation pairing and separation (seeded)")
    ap.add_argument("--n-select", type=int, default=100, help="clean clips per dataset for selectivity/sanity")
    ap.add_argument("--parts", default="localisation,selectivity,separation")
    ap.add_argument("--split", default="held-out", choices=["held-out", "validation"],
                    help="validation: the esc50-eval pool's validation part (ESC-50 A∪C 20 %%, UrbanSound8K fold 6; "
                         "speech partners from LJ001-0001…0100) — for choosing a recipe")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ex = Explainer.load(args.model, args.decoder) if args.decoder else Explainer.from_pretrained(args.model)
    b = ex.clap
    keys = parse_methods(args.methods)
    methods = build_methods(keys, ex.decoder)
    hop = b.front.stft.hop_length
    rng = random.Random(args.seed)
    if args.split == "validation":
        pool = datasets.training_pool("esc50-eval", args.data)
        val = datasets.validation_split(pool)[1]
        esc_b = [c for c in val if c.dataset == "esc50"]
        us = [c for c in val if c.dataset == "urbansound8k"]
        speech = [c for c in pool if c.dataset == "ljspeech"]
    else:
        esc_b = datasets.held_out("esc50", args.data)
        us = datasets.held_out("urbansound8k", args.data)
        speech = datasets.held_out("ljspeech", args.data)
    cache: dict[str, torch.Tensor] = {}

    def window(clip) -> torch.Tensor:
        if clip.key not in cache:
            cache[clip.key] = b.fit_window(load_audio(clip.path, b.sample_rate, min_seconds=0))
        return cache[clip.key]

    def masks_for(x: torch.Tensor, prompts: list[str], key: str, hidden=None) -> torch.Tensor:
        text = b.embed_text(prompts)
        return methods[key](b, x, text, torch.arange(len(prompts)), hidden=hidden)

    parts = set(args.parts.split(","))
    out: dict = {"model": args.model, "decoder": args.decoder or "shipped", "methods": keys, "split": args.split}
    a_clips = rng.sample(esc_b, min(args.n, len(esc_b)))

    if "localisation" in parts:
        loc: dict = {}
        for pairing, pool in (("ESC-50 + ESC-50", esc_b), ("ESC-50 + UrbanSound8K", us), ("ESC-50 + speech", speech)):
            shares: dict[str, list[float]] = {k: [] for k in keys}
            for i, a in enumerate(a_clips):
                others = [c for c in pool if c.class_key != a.class_key]
                partner = random.Random(f"{args.seed}/{pairing}/{a.key}").choice(others)
                sp = splice(window(a), window(partner), b.num_samples, i % 2 == 0, hop)
                x, _ = b.analyze(b.prepare(sp.wave[None]))
                enc = b.encode_spec(x)
                region = region_frames(sp.span, x.shape[1], hop)[None]
                for k in keys:
                    m = masks_for(x, [datasets.eval_prompt(a.category)], k, enc.hidden)
                    shares[k].append(float(energy_share(m, region)[0]))
            loc[pairing] = {LABELS.get(k, k): round(mean(v), 3) for k, v in shares.items()}
            print("localisation", pairing, loc[pairing], flush=True)
        out["localisation"] = loc

    if "selectivity" in parts:
        sel: dict = {}
        for name, ds, pool in (("ESC-50", "esc50", esc_b), ("UrbanSound8K", "urbansound8k", us)):
            clips = random.Random(f"{args.seed}/{name}").sample(pool, min(args.n_select, len(pool)))
            cats = datasets.class_names(datasets.read_dataset(ds, args.data))  # every class of the dataset
            prompts = [datasets.eval_prompt(c) for c in cats]
            text = b.embed_text(prompts)
            true_mm, unrel_mm, share, sims, mms, right = [], [], [], [], [], 0
            for clip in clips:
                x, _ = b.analyze(b.prepare(window(clip)[None]))
                enc = b.encode_spec(x)
                sim = (enc.embedding @ text.T)[0]
                pred = int(sim.argmax())
                true = cats.index(clip.category)
                right += pred == true
                m = ex.decoder(text, [h.expand(len(prompts), *h.shape[1:]) for h in enc.hidden]).flatten(1).mean(1)
                u = random.Random(f"{args.seed}/unrelated/{clip.key}").choice(
                    [j for j in range(len(prompts)) if j != true])
                true_mm.append(float(m[true]))
                unrel_mm.append(float(m[u]))
                share.append(float((m[torch.arange(len(prompts)) != pred] < m[pred]).double().mean()))
                sims.append(sim)
                mms.append(m)
            sel[name] = {"clips": len(clips), "zero_shot_accuracy": round(right / len(clips), 3),
                         "mask_mean_true": round(mean(true_mm), 4), "mask_mean_unrelated": round(mean(unrel_mm), 4),
                         "unrelated_over_true": round(mean(unrel_mm) / mean(true_mm), 3),
                         "share_smaller_than_predicted": round(mean(share), 3),
                         "spearman_mask_vs_similarity": round(spearman(torch.cat(mms), torch.cat(sims)), 3)}
            print("selectivity", name, sel[name], flush=True)
        out["selectivity"] = sel

    if "separation" in parts:
        sep: dict[str, dict[str, list[float]]] = {k: {"explanation": [], "residual": []} for k in keys + ["irm"]}
        for a in a_clips:
            others = [c for c in esc_b if c.class_key != a.class_key]
            partner = random.Random(f"{args.seed}/separation/{a.key}").choice(others)
            mix = mix_at_snr(window(a), window(partner), 0.0)
            wave = mix.wave[None]
            x, stft = b.analyze(wave)  # no further normalisation: the sources keep their scale in the mixture
            _, stft_a = b.analyze(mix.signal[None])
            _, stft_b = b.analyze(mix.noise[None])
            base_a = float(si_sdr(wave, mix.signal[None])[0])
            base_b = float(si_sdr(wave, mix.noise[None])[0])
            enc = b.encode_spec(x)
            for k in keys + ["irm"]:
                m = (ideal_ratio_mask(stft_a, stft_b, stft) if k == "irm"
                     else masks_for(x, [datasets.eval_prompt(a.category)], k, enc.hidden))
                expl = b.domain.synthesize(m, stft, wave.shape[-1])
                resid = wave - expl
                sep[k]["explanation"].append(float(si_sdr(expl, mix.signal[None])[0]) - base_a)
                sep[k]["residual"].append(float(si_sdr(resid, mix.noise[None])[0]) - base_b)
        out["separation"] = {("ideal ratio mask" if k == "irm" else LABELS.get(k, k)):
                             {"SI-SDRi explanation vs A (dB)": round(mean(v["explanation"]), 2),
                              "SI-SDRi residual vs B (dB)": round(mean(v["residual"]), 2)} for k, v in sep.items()}
        print("separation", out["separation"], flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
