"""``lmac-zs evaluate`` — the command's registration, kept here for ``lmaczs.cli``; the evaluation itself lives
in :mod:`lmaczs.evaluation` (one job per module).

    lmac-zs evaluate --data ../shared/data/esc50 --out eval/esc50 --sanity --localization --separation
    lmac-zs evaluate --data ../shared/data/urbansound8k --out eval/urbansound8k --localization --separation
    lmac-zs evaluate --clap tiny --decoder runs/x --limit 4 --out /tmp/e      # a quick run
"""

from __future__ import annotations

from .evaluation.command import cmd_evaluate, config_from_args, register_cli
from .evaluation.faithfulness import classify_batch, score_method
from .evaluation.report import write_outputs
from .evaluation.runner import EvalConfig, load_models, run_evaluation
from .evaluation.tables import build_tables, csv_tables, localization_markdown, markdown_tables, sanity_markdown

__all__ = ["EvalConfig", "build_tables", "classify_batch", "cmd_evaluate", "config_from_args", "csv_tables",
           "load_models", "localization_markdown", "markdown_tables", "register_cli", "run_evaluation",
           "sanity_markdown", "score_method", "write_outputs"]
