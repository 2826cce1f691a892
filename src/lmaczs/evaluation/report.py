"""The evaluation's output files: ``tables.md``, ``tables.csv``, ``tables.json`` and ``report.md`` of one run, and
one Markdown page over several runs (both datasets)::

    python -m lmaczs.evaluation.report eval/esc50 eval/urbansound8k --out eval/report.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Sequence

from ..checkpoint import atomic_write_text
from ..errors import LmacError
from .tables import (baselines_text, completeness_markdown, cost_markdown, csv_tables, legend, localization_markdown, markdown_tables,
                     sanity_markdown, separation_markdown)


def strict(obj):
    """NaN/inf → None, so tables.json is strict JSON (the ``*.jsonl`` logs keep NaN for Python readers)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def report_markdown(tables: dict, heading: str = "#") -> str:
    """The report of one run (``heading``: the Markdown level of its title)."""
    s = tables["settings"]
    model = s["model"]
    data = tables.get("data", {})
    h2 = heading + "#"
    extras = "".join(f", {what} decoder `{model[k]}`" for what, k in (("ablation", "ablation_decoder"),
                                                                       ("mel-domain", "mel_decoder")) if model.get(k))
    preset = s.get("baseline_settings")
    out = [f"{heading} LMAC-ZS evaluation: {data.get('label', s.get('dataset', ''))}"
           + (f", baselines at {preset} settings" if preset else "") + "\n",
           f"Command: `{tables.get('command') or 'lmac-zs evaluate'}`\n",
           f"- model: CLAP `{model['clap']}` ({model['domain']} masking), decoder `{model['decoder']}`{extras}",
           f"- data: `{s['data']}` — {data.get('held_out', '')}; {tables['clips']} clips"
           + (f" (seeded subset of {data['max_clips']})" if data.get("max_clips") else "")
           + (f", targets {data['targets']}" if data.get("targets") not in (None, "all") else "")
           + f"; {tables['prompts']} prompts (\"this is the sound of <class>\")",
           f"- conditions: {', '.join(tables['conditions'])}; contaminated at {s['snr_db']} dB SNR, seed {s['seed']}",
           f"- baselines ({s.get('baseline_settings', 'custom')} settings): "
           + baselines_text(s["baselines"]),
           f"- deletion/insertion curves: {s['curve_steps']} steps, on "
           f"{', '.join(s['curve_conditions']) or 'no condition'} (– elsewhere)",
           f"- wall time of this invocation: {tables.get('elapsed_s', 0):.0f} s\n",
           f"{h2} Faithfulness (AI/AD/AG in %)\n", markdown_tables(tables, h2 + "#")]
    comp = completeness_markdown(tables)
    if comp:
        out += [f"{h2} Integrated Gradients: completeness error\n",
                "Per clip: '|Σ attributions − (f(X) − f(0))| / |f(X) − f(0)|', f the explained logit "
                "(0 for exact integration).\n", comp]
    out += [f"{h2} Cost (seconds per clip to compute the mask, this machine)\n", cost_markdown(tables)]
    if "localization" in tables:
        out += [f"{h2} Ground-truth localisation\n",
                localization_markdown(tables["localization"], data.get("label", "A"), h2 + "#"),
                legend(tables) + "\n"]
    if "separation" in tables:
        out += [f"{h2} Separation (overlapped pairs)\n", separation_markdown(tables["separation"]),
                legend(tables) + "\n"]
    if "sanity" in tables:
        out += [f"{h2} Sanity checks\n", sanity_markdown(tables["sanity"])]
    return "\n".join(out)


def write_outputs(out: Path, tables: dict) -> None:
    """``tables.md``, ``tables.csv``, ``tables.json`` and ``report.md`` in ``out``."""
    out = Path(out)
    md = markdown_tables(tables)
    if "localization" in tables:
        md += "\n## Ground-truth localisation\n\n" + localization_markdown(tables["localization"],
                                                                          tables.get("data", {}).get("label", "A"))
    if "separation" in tables:
        md += "\n## Separation\n\n" + separation_markdown(tables["separation"])
    atomic_write_text(out / "tables.md", md)
    atomic_write_text(out / "tables.csv", csv_tables(tables))
    atomic_write_text(out / "tables.json", json.dumps(strict(tables), indent=2, default=str))
    atomic_write_text(out / "report.md", report_markdown(tables))


def combined_report(dirs: Sequence[str | Path]) -> str:
    """One page from the ``tables.json`` of several runs (e.g. ESC-50 and UrbanSound8K), each under its own
    heading (figure links stay relative to each run's folder; :func:`main` rewrites them)."""
    parts = ["# LMAC-ZS evaluation\n"]
    for d in dirs:
        path = Path(d) / "tables.json"
        if not path.is_file():
            raise LmacError(f"{d} holds no tables.json (run lmac-zs evaluate --out {d} first)")
        try:
            tables = json.loads(path.read_text())  # strict JSON: undefined numbers are null, shown as –
        except ValueError:
            raise LmacError(f"{path} is not valid JSON") from None
        parts.append(report_markdown(tables, heading="##"))
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lmaczs.evaluation.report",
                                 description="one Markdown page from several `lmac-zs evaluate` output folders")
    ap.add_argument("dirs", nargs="+", help="output folders of lmac-zs evaluate (each with tables.json)")
    ap.add_argument("--out", help="write the page here (default: stdout)")
    args = ap.parse_args(argv)
    try:
        text = combined_report(args.dirs)
        if args.out:
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out, _relink(text, args.dirs, out.parent))
        else:
            print(text)
    except LmacError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _relink(text: str, dirs: Sequence[str | Path], where: Path) -> str:
    """Figure links ``](sanity_x.png)`` of each run's section → paths relative to the page's folder."""
    import os

    sections = text.split("\n## LMAC-ZS evaluation: ")
    out = [sections[0]]
    for section, d in zip(sections[1:], dirs):
        rel = os.path.relpath(Path(d).resolve(), where.resolve())
        out.append(section.replace("](sanity_", f"]({rel}/sanity_"))
    return "\n## LMAC-ZS evaluation: ".join(out)


if __name__ == "__main__":
    sys.exit(main())
