"""Decoder figures of the model card, on split B's odd-target clips (recordings and labels the decoder never saw).

For each clip: ĉ = zero-shot prediction among all 50 ESC-50 prompts; mask mean for ĉ and for an unrelated class
prompt (drawn with a fixed seed); the share of the 49 other prompts whose mask is smaller than ĉ's (0.5: the mask
ignores the prompt); the cosine similarity t_ĉ·a of the clean clip and t_ĉ·e(M ⊙ X) after masking.

    python tools/decoder_report.py --model esc50-eval
    python tools/decoder_report.py --model esc50-eval --decoder runs/esc50-eval-paper-lzs   # another decoder
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from lmaczs import Explainer
from lmaczs import datasets
from lmaczs.audio import load_audio
from tune_decoder import share_below  # tools/ is on sys.path when this script runs


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="esc50-eval")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "esc50"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--decoder", help="a run directory to report instead of the model's shipped decoder")
    args = ap.parse_args()
    ex = Explainer.load(args.model, args.decoder) if args.decoder else Explainer.from_pretrained(args.model)
    b = ex.clap
    clips = datasets.read_esc50(args.data)
    prompts = [datasets.eval_prompt(n) for n in datasets.class_names(clips)]
    text = b.embed_text(prompts)
    rng = random.Random(args.seed)
    rows = []
    for clip in datasets.select(clips, splits=["B"], targets="odd"):
        wave = b.fit_window(load_audio(clip.path, b.sample_rate))
        x, _ = b.analyze(b.prepare(wave[None]))
        enc = b.encode_spec(x)
        c = int((enc.embedding @ text.T).argmax())
        u = rng.choice([j for j in range(len(prompts)) if j != c])
        m_c = ex.decoder(text[c:c + 1], enc.hidden)
        m_u = ex.decoder(text[u:u + 1], enc.hidden)
        kept = float(b.encode_spec(m_c * x).embedding[0] @ text[c])
        rows.append((float(m_c.mean()), float(m_u.mean()), float(enc.embedding[0] @ text[c]), kept,
                     float(share_below(ex.decoder, text, enc.hidden, c)), prompts[c] == datasets.eval_prompt(clip.category)))
    t = torch.tensor([r[:5] for r in rows])
    n = len(rows)
    print(f"{args.model}: {n} clips of split B, odd targets; zero-shot accuracy {sum(r[5] for r in rows) / n:.1%}")
    print(f"mask mean, predicted prompt:  {t[:, 0].mean():.3f} (median {t[:, 0].median():.3f})")
    print(f"mask mean, unrelated prompt:  {t[:, 1].mean():.3f} (median {t[:, 1].median():.3f})")
    print(f"predicted > unrelated on {int((t[:, 0] > t[:, 1]).sum())}/{n} clips")
    print(f"share of the 49 other prompts with a smaller mask: {t[:, 4].mean():.3f} (clips above 0.5: "
          f"{int((t[:, 4] > 0.5).sum())}/{n})")
    print(f"cosine t_c·a, clean:          {t[:, 2].mean():.3f}")
    print(f"cosine t_c·e(M⊙X), masked:    {t[:, 3].mean():.3f}  (kept {t[:, 3].mean() / t[:, 2].mean():.1%})")


if __name__ == "__main__":
    main()
