"""The ``lmac-zs`` command line. Every LmacError ends as one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from .errors import LmacError


def _explainer(args: argparse.Namespace, need_decoder: bool):
    from .clap import EMBEDDED, load_backend
    from .explain import Explainer

    if args.decoder:
        return Explainer.load(args.clap, args.decoder, device=args.device)
    clap = args.clap or "default"
    if clap in EMBEDDED:
        return Explainer.from_pretrained(clap, device=args.device)
    if need_decoder:
        raise LmacError(f"backend {clap!r} needs a trained decoder: pass --decoder RUN_DIR (see lmac-zs train)")
    return Explainer(load_backend(clap), None, device=args.device)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clap", help="CLAP backend: default, esc50-eval, tiny[:SEED], hf:DIR_OR_ID, "
                                  "msclap2022:CHECKPOINT.pth (default: the embedded 'default' model)")
    p.add_argument("--decoder", help="run directory of a decoder trained with `lmac-zs train`")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def _add_prompt_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--prompt", action="append", dest="prompts", default=[], metavar="PROMPT",
                   help="a candidate prompt (repeat for several)")
    p.add_argument("--prompts-file", help="text file with one prompt per line")


def _prompts(args: argparse.Namespace) -> list[str]:
    from .checks import read_text_file
    from .errors import PromptError

    prompts = list(args.prompts)
    if args.prompts_file:
        text = read_text_file(args.prompts_file, "prompts file", PromptError)
        prompts += [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise LmacError("no prompts: give -p PROMPT (several times) or --prompts-file FILE")
    return prompts


def _check_inputs(args: argparse.Namespace) -> list[str]:
    """Prompts and audio paths of classify/explain, checked before a model is loaded. Returns the prompts."""
    from .audio import check_audio_path
    from .explain import check_prompts

    prompts = check_prompts(_prompts(args))
    for what in ("target", "contrast"):
        chosen = getattr(args, what, None)
        if chosen is not None and chosen not in prompts:
            raise LmacError(f"{what} prompt {chosen!r} is not among the prompts {prompts}")
    for f in args.files:
        check_audio_path(f)
    return prompts


def cmd_classify(args: argparse.Namespace) -> int:
    prompts = _check_inputs(args)
    ex = _explainer(args, need_decoder=False)
    results = {str(f): ex.classify(f, prompts) for f in args.files}
    if args.json:
        print(json.dumps(results if len(results) > 1 else next(iter(results.values())), indent=2))
        return 0
    for f, scores in results.items():
        print(f)
        width = max(len(p) for p in scores)
        for p, v in sorted(scores.items(), key=lambda kv: -kv[1]):
            print(f"  {p:<{width}}  {v:6.3f}  {'█' * int(round(v * 30))}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from .checks import output_stems

    prompts = _check_inputs(args)
    top_k = getattr(args, "top_k", None)
    if top_k is not None and (args.target or args.contrast):
        raise LmacError("--top-k explains the k top-scoring prompts: do not combine it with --target/--contrast")
    stems = output_stems(args.files)  # a/x.wav and b/x.wav → a-x.*, b-x.*: no output overwrites another
    ex = _explainer(args, need_decoder=True)
    explanations = []
    for f, file_stem in zip(args.files, stems):
        if top_k is not None:
            ranked = ex.explain_topk(f, prompts, k=top_k)
            found = [(e, f"{file_stem}.top{i}") for i, e in enumerate(ranked, 1)]
        else:
            found = [(ex.explain(f, prompts, target=args.target, contrast=args.contrast), file_stem)]
        for e, stem in found:
            labels = getattr(args, "labels", False)
            paths = e.save(args.out, stem=stem, labels=labels, log_freq=getattr(args, "log_freq", False))
            explanations.append(e)
            extra = f", {paths['labels']}, {paths['timeline']}" if labels else ""
            print(f"{f}: '{e.prediction}' (p = {e.scores[e.prediction]:.3f}, mask mean {e.mask_mean:.3f}) → "
                  f"{paths['wav']}, {paths['png']}, {paths['json']}{extra}")
    if args.report:
        from .report import write_report

        print(f"report → {write_report(explanations, Path(args.report))}")
    return 0


def mix_config(args: argparse.Namespace) -> dict | None:
    """``--mix`` and its probabilities as the MixConfig fields a TrainConfig stores (validated here)."""
    if not args.mix:
        return None
    from .mixtures import MixConfig

    return MixConfig(p_overlap=args.mix_overlap, p_splice=args.mix_splice, p_silence=args.mix_silence).to_dict()


def cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train

    cfg = TrainConfig(clap=args.clap, data=args.data, out=args.out, domain=args.domain, splits=args.splits,
                      folds=args.folds, targets=args.targets, epochs=args.epochs, max_steps=args.max_steps,
                      batch_size=args.batch_size, lr=args.lr, lambda1=args.lambda1, lambda2=args.lambda2,
                      baseline=args.baseline, lambda_out=args.lambda_out, similarity=args.similarity, pool=args.pool,
                      source_targets=args.source_targets, source_residuals=args.source_residuals,
                      mix=mix_config(args), val_fraction=args.val_fraction, seed=args.seed, checkpoint_every=args.checkpoint_every,
                      widths=args.widths, frame_prior=args.frame_prior, progress=not args.quiet,
                      group_size=args.group_size, device=args.device)
    summary = train(cfg, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(json.dumps(summary, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from .checkpoint import load_decoder, save_decoder

    decoder, meta = load_decoder(Path(args.run))
    meta = {k: v for k, v in meta.items() if k not in ("format", "decoder")}
    save_decoder(Path(args.to), decoder, meta, dtype=torch.float16 if args.fp16 else torch.float32)
    print(f"decoder of {args.run} → {args.to}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="lmac-zs", description="Listenable explanations of zero-shot audio "
                                     "classifiers (LMAC-ZS) for CLAP models.")
    parser.add_argument("--version", action="version", version=f"lmaczs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("classify", help="zero-shot scores of audio files against prompts")
    p.add_argument("files", nargs="+", help="audio files (wav, flac, ogg, mp3)")
    _add_prompt_args(p)
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("explain", help="explain the zero-shot decision: scores, mask, listenable wav, figure")
    p.add_argument("files", nargs="+", help="audio files (wav, flac, ogg, mp3)")
    _add_prompt_args(p)
    _add_model_args(p)
    p.add_argument("--out", default="explanations", help="output directory (default: explanations)")
    p.add_argument("--target", help="prompt to explain (default: the top-scoring one)")
    p.add_argument("--contrast", help="explain the target *rather than* this prompt")
    p.add_argument("--top-k", type=int, metavar="K", help="explain each of the K top-scoring prompts "
                   "(files <stem>.top1.*, <stem>.top2.*, ...)")
    p.add_argument("--report", help="also write one self-contained HTML report to this path")
    p.add_argument("--labels", action="store_true",
                   help="also write <stem>.labels.txt (an Audacity label track: where each prompt is active, "
                        "File > Import > Labels) and <stem>.timeline.csv (per-frame activity and score per prompt)")
    p.add_argument("--log-freq", action="store_true", help="figure with a logarithmic frequency axis")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("train", help="train an LMAC-ZS decoder for a CLAP backend (CLAP stays frozen)")
    p.add_argument("--clap", default="default", help="CLAP backend spec (see `explain --help`; default: the "
                                                     "embedded 'default' model)")
    p.add_argument("--data", required=True, help="captions CSV (path,caption), ESC-50-style folder, or (with "
                                                  "--pool) the folder holding esc50/, urbansound8k/, ljspeech/")
    p.add_argument("--pool", choices=["esc50-eval", "default", "unseen-prompts", "esc50-eval:train"],
                   help="train on a training pool of the data protocol (../shared/data/README.md); "
                        "esc50-eval:train leaves out its validation part (for choosing hyper-parameters)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, decoder, log)")
    p.add_argument("--domain", default="stft", choices=["stft", "mel"], help="masking domain (default: stft)")
    p.add_argument("--splits", nargs="+", help="ESC-50 folder: splits to use (A, B) from meta/splits.csv")
    p.add_argument("--folds", nargs="+", type=int, help="ESC-50 folder: folds to use")
    p.add_argument("--targets", default="all", choices=["all", "even", "odd"], help="ESC-50 class parity")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--max-steps", type=int, help="stop after this many steps in all")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--lambda1", type=float, default=0.1, help="weight of the mask L1 (sparsity) term")
    p.add_argument("--lambda2", type=float, default=1.0, help="weight of the diversity term D")
    p.add_argument("--baseline", default="silence", choices=["silence", "none"],
                   help="silence (default): match each prompt's similarity above its similarity to an empty "
                        "input, so unrelated prompts get empty masks; none: the paper's L_ZS as published")
    p.add_argument("--similarity", default="abs", choices=["abs", "hinge"],
                   help="abs (the paper): the masked input keeps the clean similarity exactly; hinge: it keeps at "
                        "least that evidence (removing an unnamed second source is not penalised)")
    p.add_argument("--lambda-out", type=float, default=0.0,
                   help="weight of the out term: what the mask removes must lose the prompt's evidence "
                        "(0: off, the paper's L_ZS)")
    p.add_argument("--mix", action="store_true",
                   help="train on multi-source examples made on the fly: overlapped and spliced pairs of clips "
                        "of different classes, silence, single clips (src/lmaczs/mixtures.py)")
    p.add_argument("--source-targets", action="store_true",
                   help="with --mix: a mixture under one source's caption must keep the similarity of that source "
                        "heard alone, not of the whole mixture (pushes the mask to drop the unnamed source)")
    p.add_argument("--source-residuals", action="store_true",
                   help="with --mix and --lambda-out: the out term of a mixture under one source's caption counts "
                        "only the evidence above what the other source alone gets (not above silence)")
    p.add_argument("--mix-overlap", type=float, default=0.35, help="share of overlapped pairs (with --mix)")
    p.add_argument("--mix-splice", type=float, default=0.35, help="share of spliced pairs (with --mix)")
    p.add_argument("--mix-silence", type=float, default=0.05, help="share of empty windows (with --mix)")
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--widths", type=int, nargs=4, help="decoder channel widths, shallow → deep")
    p.add_argument("--frame-prior", action="store_true",
                   help="give the decoder a frozen copy of the CLAP's audio head, applied frame by frame: where in "
                        "time the CLAP finds the prompt (embedded models; src/lmaczs/decoder.py)")
    p.add_argument("--group-size", type=int, help="clips per L_ZS group (default: the per-process batch); "
                                                   "see docs/scaling.md")
    p.add_argument("--device", help="torch device (default: cpu; cuda:LOCAL_RANK under torchrun with CUDA)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="copy a run's decoder (weights + JSON only) to a folder, e.g. to ship it")
    p.add_argument("run", help="run directory of `lmac-zs train`")
    p.add_argument("--to", required=True, help="destination folder (e.g. src/lmaczs/assets/default)")
    p.add_argument("--fp16", action="store_true", help="store the weights in float16")
    p.set_defaults(func=cmd_export)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable]:
    """Sub-commands living in their own modules (each exposes ``register_cli(subparsers)``)."""
    import importlib

    found = []
    for mod in ("clap_train", "evaluate", "web", "corpus"):
        try:
            module = importlib.import_module(f"lmaczs.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("lmaczs"):
                continue
            raise
        if hasattr(module, "register_cli"):
            found.append(module.register_cli)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    from .checks import check_cli_args

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_cli_args(args)  # devices, counts, output locations: before any model is loaded
        return int(args.func(args) or 0)
    except LmacError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment (permissions, a full disk) where no check turned it into an LmacError
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
