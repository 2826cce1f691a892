"""``lmac-zs evaluate``: the command line of :func:`.runner.run_evaluation` (registered by ``lmaczs.evaluate``)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ..checks import check_int
from ..errors import LmacError
from .conditions import CONDITIONS, SNR_DB, check_conditions
from .localization import PAIRINGS, check_pairings
from .methods import ALL_METHODS, BASELINE_PRESETS, DEFAULT_PRESET, PRESETS, parse_methods
from .runner import EvalConfig, run_evaluation
from .stats import RESAMPLES
from .tables import localization_markdown, markdown_tables, separation_markdown


def register_cli(subparsers) -> None:
    std, red = BASELINE_PRESETS["standard"], BASELINE_PRESETS["reduced"]
    p = subparsers.add_parser("evaluate", help="faithfulness tables (paper Tables 1–2) with 95 %% intervals, "
                                               "localisation, separation and sanity checks on held-out ESC-50 "
                                               "or UrbanSound8K clips")
    p.add_argument("--clap", help="CLAP backend spec (default: the embedded esc50-eval model, or the backend "
                                  "the --decoder run was trained on)")
    p.add_argument("--decoder", help="run directory of the LMAC-ZS decoder (default: the embedded one)")
    p.add_argument("--data", default="../shared/data/esc50",
                   help="an ESC-50 folder (meta/esc50.csv, meta/splits.csv) or an UrbanSound8K folder "
                        "(meta/UrbanSound8K.csv), told apart by their layout (default: %(default)s)")
    p.add_argument("--speech", help="LJ Speech folder for the speech condition and pairing (default: "
                                    "<data>/../ljspeech; only LJ001-0101 … 0150 are used)")
    p.add_argument("--methods", default=",".join(ALL_METHODS),
                   help=f"comma-separated methods (default: all = {','.join(ALL_METHODS)})")
    p.add_argument("--conditions", default=",".join(CONDITIONS),
                   help=f"comma-separated conditions (default: {','.join(CONDITIONS)})")
    p.add_argument("--out", default="eval", help="output directory (logs, tables, report; default: eval)")
    p.add_argument("--split", help="ESC-50: the split to evaluate (default: B, the held-out split)")
    p.add_argument("--targets", choices=["all", "even", "odd"],
                   help="ESC-50: class parity (default: all 193 clips of B; odd: B's 94 odd-target clips, the "
                        "earlier tables' selection)")
    p.add_argument("--folds", type=int, nargs="+", metavar="K",
                   help="UrbanSound8K: folds to evaluate (default: 7 8, the held-out folds); ESC-50: a filter "
                        "within the split")
    p.add_argument("--max-clips", type=int, metavar="N",
                   help="a fixed seeded subset of N clips (nested: the subset of N is inside that of N+1, so a "
                        "longer run extends a shorter one)")
    p.add_argument("--limit", type=int, help="evaluate only the first N clips (after --max-clips)")
    p.add_argument("--seed", type=int, default=0, help="seed of the contaminants, partners, subsets, sanity "
                                                       "samples, bootstrap and tests (default 0)")
    p.add_argument("--snr-db", type=float, default=SNR_DB, help=f"SNR of contaminated conditions (default {SNR_DB})")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--curve-steps", type=int, default=EvalConfig.curve_steps,
                   help="deletion/insertion curve steps (0: skip them; default %(default)s)")
    p.add_argument("--curve-conditions", default="clean",
                   help="conditions whose deletion/insertion curves are computed: comma-separated, 'all' or "
                        "'none' (default: clean; each costs 2 × (steps − 1) forwards per clip and method)")
    p.add_argument("--baseline-settings", choices=PRESETS, default=DEFAULT_PRESET,
                   help=f"standard (default): IG {std['ig']['steps']} steps, SmoothGrad "
                        f"{std['smoothgrad']['samples']} samples at σ = {std['smoothgrad']['noise']} of the input "
                        f"range, ScoreCAM over the {std['scorecam']['max_channels']} most active channels; reduced: "
                        f"IG {red['ig']['steps']}, SmoothGrad {red['smoothgrad']['samples']} at "
                        f"{red['smoothgrad']['noise']}, ScoreCAM {red['scorecam']['max_channels']} (the earlier "
                        "tables, quick runs)")
    p.add_argument("--ig-steps", type=int, help="override the IG steps of the preset")
    p.add_argument("--smoothgrad-samples", type=int, help="override the SmoothGrad samples of the preset")
    p.add_argument("--scorecam-channels", type=int, help="override the ScoreCAM channels of the preset")
    p.add_argument("--sanity", action="store_true", help="also run the sanity checks (figures + numbers)")
    p.add_argument("--sanity-clips", type=int, default=EvalConfig.sanity_clips)
    p.add_argument("--localization", action="store_true",
                   help="also run the ground-truth localisation test (spliced items, one table per pairing)")
    p.add_argument("--pairings", default=",".join(PAIRINGS),
                   help=f"localisation partners: comma-separated from {','.join(PAIRINGS)} (default: all; "
                        "the other dataset is found beside --data)")
    p.add_argument("--separation", action="store_true",
                   help="also run the separation benchmark (overlapped pairs at 0 dB, SI-SDR, ideal ratio mask)")
    p.add_argument("--ablation-decoder", help="run directory of a second decoder to compare (an ablation, e.g. one "
                   "trained with the paper's L_ZS: --baseline none), reported as 'LMAC-ZS (ablation)'")
    p.add_argument("--mel-decoder", help="run directory of a decoder trained on the same CLAP with --domain mel, "
                                         "reported as 'LMAC-ZS (mel)'")
    p.add_argument("--bootstrap", type=int, default=RESAMPLES,
                   help="bootstrap resamples of the clips per table cell (default %(default)s)")
    p.add_argument("--test", choices=["signflip", "wilcoxon"], default="signflip",
                   help="paired test of each LMAC-ZS decoder against the best baseline (default: signflip)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evaluate, evaluate_parser=p)


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces ``args`` (options that differ from their defaults)."""
    parser = getattr(args, "evaluate_parser", None)
    defaults = vars(parser.parse_args([])) if parser is not None else {}
    parts = ["lmac-zs", "evaluate"]
    for key, value in vars(args).items():
        if key in ("func", "evaluate_parser", "command") or value == defaults.get(key) or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            parts += [flag] + [shlex.quote(str(v)) for v in value]
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def _curve_conditions(spec: str) -> list[str]:
    spec = spec.strip().lower()
    if spec == "all":
        return list(CONDITIONS)
    if spec in ("none", ""):
        return []
    return check_conditions(spec.split(","))


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """An :class:`EvalConfig` from parsed arguments, every value checked (one-line errors)."""
    for flag, value, minimum in (("--max-clips", args.max_clips, 1), ("--bootstrap", args.bootstrap, 1),
                                 ("--sanity-clips", args.sanity_clips, 1)):
        check_int(flag, value, minimum=minimum)
    for k in args.folds or []:
        if k < 1:
            raise LmacError(f"--folds: fold numbers start at 1, got {k}")
    options: dict[str, dict] = {}
    if args.ig_steps:
        options["ig"] = {"steps": args.ig_steps}
    if args.smoothgrad_samples:
        options["smoothgrad"] = {"samples": args.smoothgrad_samples}
    if args.scorecam_channels:
        options["scorecam"] = {"max_channels": args.scorecam_channels}
    return EvalConfig(clap=args.clap, decoder=args.decoder, data=args.data, speech=args.speech, out=args.out,
                      methods=parse_methods(args.methods), conditions=check_conditions(args.conditions.split(",")),
                      split=args.split, targets=args.targets, folds=args.folds, limit=args.limit,
                      max_clips=args.max_clips, seed=args.seed, snr_db=args.snr_db, batch_size=args.batch_size,
                      curve_steps=args.curve_steps, curve_conditions=_curve_conditions(args.curve_conditions),
                      baseline_settings=args.baseline_settings, baseline_options=options, sanity=args.sanity,
                      sanity_clips=args.sanity_clips, localization=args.localization,
                      pairings=check_pairings(args.pairings.split(",")), separation=args.separation,
                      ablation_decoder=args.ablation_decoder, mel_decoder=args.mel_decoder,
                      bootstrap=args.bootstrap, test=args.test, device=args.device, threads=args.threads,
                      progress=not args.quiet, command=_command(args))


def cmd_evaluate(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    tables = run_evaluation(cfg)
    out = Path(cfg.out)
    print(markdown_tables(tables))
    if "localization" in tables:
        print(localization_markdown(tables["localization"], tables["data"]["label"]))
    if "separation" in tables:
        print(separation_markdown(tables["separation"]))
    print(f"tables → {out / 'tables.md'}, {out / 'tables.csv'}, {out / 'tables.json'}; report → {out / 'report.md'}")
    return 0
