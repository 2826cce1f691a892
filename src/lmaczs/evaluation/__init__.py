"""The evaluation of LMAC-ZS and the post-hoc baselines (``lmac-zs evaluate``), one job per module:

==================  =========================================================================================
``data``            which clips: the held-out set of ESC-50 (split B) or UrbanSound8K (folds 7–8), prompts
``conditions``      clean, and contaminated at 3 dB by another clip, white noise or held-out LJ Speech
``methods``         LMAC-ZS decoders and the baselines behind one call; the standard/reduced presets
``metrics``         AI, AD, AG, FF, Fid-In, SPS, COMP, MM, deletion/insertion AUC
``faithfulness``    the faithfulness part: every method × clip × condition → ``results.jsonl``
``localization``    spliced items with partners from ESC-50, UrbanSound8K and speech → ``localization.jsonl``
``separation``      overlapped pairs at 0 dB, SI-SDR(i), the ideal ratio mask → ``separation.jsonl``
``sanity``          mask mean vs similarity, unrelated-prompt shut-off, cascading and prompt randomisation
``stats``           bootstrap intervals and paired tests
``tables``          the tables from the logs (intervals, tests) and their Markdown/CSV
``report``          ``tables.*`` and ``report.md``; one page over several runs
``settings_effect``  how much the reduced baseline settings change each metric (two runs, paired)
``logs``            resumable JSON-lines logs and the settings check of an output folder
``context``         what the parts share (backend, methods, clips, prompts)
``runner``          one run end to end (:class:`EvalConfig`, :func:`run_evaluation`)
``command``         the ``lmac-zs evaluate`` command line
==================  =========================================================================================

Names are imported lazily (``from lmaczs.evaluation import run_evaluation``), so that the light modules
(``conditions``, ``localization``, ``separation``, ``metrics``) can be used without loading the rest.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "EvalConfig": "runner", "run_evaluation": "runner", "load_models": "runner",
    "register_cli": "command", "cmd_evaluate": "command",
    "select_eval_data": "data", "EvalData": "data",
    "Conditions": "conditions", "CONDITIONS": "conditions", "mix_at_snr": "conditions",
    "build_methods": "methods", "parse_methods": "methods", "BASELINE_PRESETS": "methods",
    "bootstrap_ci": "stats", "paired_test": "stats", "StatsConfig": "stats",
    "si_sdr": "separation", "ideal_ratio_mask": "separation",
    "build_tables": "tables", "write_outputs": "report", "combined_report": "report",
    "settings_effect": "settings_effect", "compare_runs": "settings_effect",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
