"""One self-contained HTML report of explanations: players, figure, scores and backend facts in one file.

Everything is inlined (WAV and PNG as base64 ``data:`` URIs, CSS in the page, no script), so the file opens
offline, can be mailed or archived, and references no external URL.

    from lmaczs.report import write_report
    write_report([ex.explain("dog.wav", prompts)], "report.html")
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from . import __version__
from .checkpoint import atomic_write_text
from .errors import LmacError
from .explain import Explanation

_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1rem 1.5rem 3rem; color: #1d2330; background: #fafbfc; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; }
h2 { font-size: 1.15rem; margin: 0 0 .6rem; }
h3 { font-size: .95rem; margin: .8rem 0 .3rem; }
section { background: #fff; border: 1px solid #dde1e8; border-radius: 8px; padding: 1rem 1.2rem; margin: 1.2rem 0; }
.muted { color: #5c6577; font-size: .9rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 1.2rem; align-items: start; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
td, th { padding: .2rem .4rem; text-align: left; vertical-align: middle; }
th { color: #5c6577; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; width: 4.5em; }
.bar { background: #e7eaf0; border-radius: 3px; height: .8rem; min-width: 80px; }
.bar > div { background: #3b6fd8; height: 100%; border-radius: 3px; }
tr.explained td { font-weight: 700; }
tr.explained .bar > div { background: #d8573b; }
tr.contrast .bar > div { background: #8a8f99; }
.players { display: grid; grid-template-columns: repeat(auto-fit, minmax(240px, 1fr)); gap: .8rem; margin: .8rem 0; }
.players figure { margin: 0; }
.players figcaption { font-size: .85rem; color: #5c6577; margin-bottom: .2rem; }
audio { width: 100%; }
img.fig { width: 100%; height: auto; border: 1px solid #eef0f4; }
details { margin-top: .6rem; font-size: .85rem; }
pre { white-space: pre-wrap; word-break: break-word; background: #f3f5f8; padding: .6rem; border-radius: 6px; }
.note { background: #fff7e0; border-left: 3px solid #e0a800; padding: .3rem .6rem; font-size: .88rem; }
nav ol { margin: .3rem 0; padding-left: 1.4rem; }
"""


def wav_data_uri(samples: np.ndarray, sample_rate: int) -> str:
    """``(N,)`` float samples in [-1, 1] → ``data:audio/wav;base64,...`` (16-bit PCM, played by every browser)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0), int(sample_rate), format="WAV",
             subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def png_data_uri(fig, dpi: int = 100) -> str:
    """A matplotlib figure → ``data:image/png;base64,...`` (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    finally:
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def playable(e: Explanation) -> dict[str, np.ndarray]:
    """The clips to listen to (original when kept, explanation, residual), scaled by one common factor so their
    relative loudness is kept and nothing clips."""
    clips = {"original": e.original, "explanation": e.audio, "residual": e.residual}
    clips = {k: np.asarray(v, dtype=np.float32) for k, v in clips.items() if v is not None}
    peak = max((float(np.abs(v).max()) for v in clips.values() if v.size), default=0.0)
    scale = 1.0 / peak if peak > 1.0 else 1.0
    return {k: v * scale for k, v in clips.items()}


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _kind(e: Explanation) -> str:
    method = e.extra.get("method")
    kind = f"baseline {method}" if method else "LMAC-ZS"
    if e.extra.get("rank"):
        kind += f", top-{e.extra['rank']}"
    return kind


def _scores_table(e: Explanation) -> str:
    rows = []
    for prompt, p in sorted(e.scores.items(), key=lambda kv: -kv[1]):
        cls = "explained" if prompt == e.prediction else "contrast" if prompt == e.contrast else ""
        mark = " (explained)" if prompt == e.prediction else " (rather than)" if prompt == e.contrast else ""
        rows.append(f'<tr class="{cls}"><td>{_esc(prompt)}{mark}</td><td class="num">{p:.3f}</td>'
                    f'<td style="width:40%"><div class="bar"><div style="width:{100 * p:.1f}%"></div></div></td></tr>')
    return ('<table class="scores"><tr><th>prompt</th><th class="num">p</th><th></th></tr>'
            + "".join(rows) + "</table>")


def _facts_table(e: Explanation) -> str:
    facts = dict(e.backend)
    facts.update({"duration (s)": f"{len(e.audio) / e.sample_rate:.2f}", "windows": len(e.window_scores),
                  "mask mean": f"{e.mask_mean:.3f}", "whole-clip mask (T, F)": "×".join(map(str, e.mask.shape))})
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in facts.items())
    return f'<table class="facts">{rows}</table>'


def _section(i: int, e: Explanation) -> str:
    title = f"{Path(e.source).name}: “{e.prediction}”"
    if e.contrast:
        title += f" rather than “{e.contrast}”"
    players = "".join(f'<figure><figcaption>{_esc(name)}</figcaption>'
                      f'<audio controls preload="metadata" src="{wav_data_uri(clip, e.sample_rate)}"></audio>'
                      f'</figure>' for name, clip in playable(e).items())
    note = ""
    if not e.listenable:
        note = ('<p class="note">This backend masks a mel spectrogram: the audio is an approximate resynthesis, '
                'not an exact part of the input.</p>')
    meta = json.dumps(e.to_dict(), indent=2, ensure_ascii=False)
    return f"""
<section id="e{i}">
  <h2>{i}. {_esc(title)}</h2>
  <p class="muted">{_esc(_kind(e))} · source {_esc(e.source)} · p = {e.scores[e.prediction]:.3f}
     · {e.sample_rate} Hz</p>
  <div class="players">{players}</div>{note}
  <img class="fig" alt="spectrogram, mask and masked spectrogram" src="{png_data_uri(e.figure())}">
  <div class="grid">
    <div><h3 class="muted">zero-shot scores</h3>{_scores_table(e)}</div>
    <div><h3 class="muted">backend</h3>{_facts_table(e)}</div>
  </div>
  <details><summary>JSON</summary><pre>{_esc(meta)}</pre></details>
</section>"""


def render_report(explanations: Sequence[Explanation], title: str = "LMAC-ZS explanations") -> str:
    """The report's HTML text (see :func:`write_report`)."""
    explanations = list(explanations)
    if not explanations:
        raise LmacError("nothing to report: no explanations")
    import torch

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions = f"lmaczs {__version__} · torch {torch.__version__} · python {platform.python_version()}"
    toc = "".join(f'<li><a href="#e{i}">{_esc(Path(e.source).name)}: {_esc(e.prediction)}'
                  f'{" rather than " + _esc(e.contrast) if e.contrast else ""} ({_esc(_kind(e))})</a></li>'
                  for i, e in enumerate(explanations, 1))
    sections = "".join(_section(i, e) for i, e in enumerate(explanations, 1))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{_esc(title)}</h1>
<p class="muted">{len(explanations)} explanation(s) · {_esc(when)} · {_esc(versions)}</p>
<p class="muted">Each mask keeps the parts of the spectrogram that the zero-shot classifier relies on for the
explained prompt; the <b>explanation</b> is the input filtered by that mask (original phase), the <b>residual</b>
is what the mask removed.</p>
<nav><ol>{toc}</ol></nav>
{sections}
</body>
</html>
"""


def write_report(explanations: Sequence[Explanation], path: str | os.PathLike,
                 title: str = "LMAC-ZS explanations") -> Path:
    """Write one self-contained HTML file for ``explanations`` atomically. Returns its path."""
    path = Path(path)
    text = render_report(explanations, title)
    atomic_write_text(path, text)
    return path
