"""The web demo, ``lmac-zs serve``: upload or record a clip, type prompts, see and *hear* the explanation.

The page (gradio, the ``web`` extra) shows the zero-shot scores as bars, the spectrogram with the LMAC-ZS mask,
players for the original, the explanation and the residual, lets one pick the prompt to explain and a prompt to
explain it *rather than*, and puts a post-hoc saliency baseline (:mod:`lmaczs.baselines`) beside LMAC-ZS.

The logic lives in :class:`Demo` (plain Python, tested without a browser); :func:`build_app` only wires it to
gradio components. Errors reach the page as one line (an :class:`LmacError` message), never as a stack trace.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from .errors import AudioError, LmacError

if TYPE_CHECKING:  # the CLI imports this module for every command: keep torch out of its import
    from .explain import Explainer, Explanation

log = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).parent / "assets" / "examples"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
MAX_UPLOAD_MB = 20.0
MAX_SECONDS = 60.0
TOP = "(top prediction)"
NONE = "(none)"
DEFAULT_BASELINE = "gradcam++"
DEFAULT_PROMPTS = ["dog", "rain", "crying baby", "church bells", "helicopter", "sea waves"]


def baseline_names() -> list[str]:
    """The saliency baselines available (empty when :mod:`lmaczs.baselines` is missing or broken)."""
    try:
        from .baselines import METHODS
    except Exception as exc:  # optional: the demo works without baselines
        log.warning("baselines unavailable: %s", exc)
        return []
    return list(METHODS)


def parse_prompts(text: str | None) -> list[str]:
    """One prompt per line (blank lines ignored), validated by :func:`lmaczs.explain.check_prompts`."""
    from .explain import check_prompts

    return check_prompts([line.strip() for line in (text or "").splitlines() if line.strip()])


def figure_image(e: Explanation):
    """The explanation's matplotlib figure as a PIL image (the figure is closed: no leak across requests)."""
    import matplotlib.pyplot as plt
    from PIL import Image

    fig = e.figure()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=90)
    finally:
        plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _players(e: Explanation) -> dict[str, tuple[int, np.ndarray]]:
    """``{original, explanation, residual}`` → ``(sample_rate, int16 samples)`` with one common gain."""
    from .report import playable

    return {k: (e.sample_rate, np.round(v * 32767).astype(np.int16)) for k, v in playable(e).items()}


@dataclass
class DemoResult:
    """What one click on "Explain" shows."""

    scores: dict[str, float]
    status: str
    figure: Any = None  # PIL images
    original: Optional[tuple[int, np.ndarray]] = None
    explanation: Optional[tuple[int, np.ndarray]] = None
    residual: Optional[tuple[int, np.ndarray]] = None
    baseline_figure: Any = None
    baseline_explanation: Optional[tuple[int, np.ndarray]] = None
    baseline_residual: Optional[tuple[int, np.ndarray]] = None
    lmac: Optional[Explanation] = None
    baseline: Optional[Explanation] = None

    def outputs(self) -> tuple:
        """The values in :data:`OUTPUT_ORDER`."""
        return tuple(getattr(self, name) for name in OUTPUT_ORDER)


OUTPUT_ORDER = ("scores", "figure", "original", "explanation", "residual", "baseline_figure",
                "baseline_explanation", "baseline_residual", "status")


class Demo:
    """The demo's callbacks around one :class:`Explainer`, with upload limits.

    Args:
        explainer: an Explainer with a decoder.
        max_upload_mb: files larger than this are refused.
        max_seconds: clips longer than this are refused.
        examples_dir: folder of example clips (``*.wav|flac|ogg|mp3``) and an optional ``prompts.txt``.
    """

    def __init__(self, explainer: Explainer, max_upload_mb: float = MAX_UPLOAD_MB, max_seconds: float = MAX_SECONDS,
                 examples_dir: str | os.PathLike | None = EXAMPLES_DIR):
        if explainer.decoder is None:
            raise LmacError("the demo needs a trained decoder: pass --decoder RUN_DIR or an embedded model")
        self.explainer = explainer
        self.max_upload_mb = float(max_upload_mb)
        self.max_seconds = float(max_seconds)
        self.examples_dir = Path(examples_dir) if examples_dir else None
        self.baselines = baseline_names()

    # -- page content ---------------------------------------------------------------------------
    def examples(self) -> list[Path]:
        d = self.examples_dir
        if d is None or not d.is_dir():
            return []
        return sorted(p for p in d.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())

    def default_prompts(self) -> list[str]:
        """``prompts.txt`` of the examples folder, else a few ESC-50 classes."""
        f = self.examples_dir / "prompts.txt" if self.examples_dir else None
        if f is not None and f.is_file():
            lines = [line.strip() for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
            if lines:
                return lines
        from .esc50 import eval_prompt

        return [eval_prompt(c) for c in DEFAULT_PROMPTS]

    def limits_text(self) -> str:
        return f"Up to {self.max_upload_mb:g} MB and {self.max_seconds:g} s per clip (wav, flac, ogg, mp3)."

    def model_text(self) -> str:
        c = self.explainer.clap
        meta = self.explainer.meta
        step = f", decoder step {meta['step']}" if "step" in meta else ""
        return (f"Model: CLAP backend `{c.spec}` ({c.sample_rate} Hz, {c.num_samples / c.sample_rate:g} s windows, "
                f"{c.domain_name} masking{step}).")

    def choices(self, prompts_text: str | None, target: str | None = None, contrast: str | None = None,
                ) -> tuple[list[str], str, list[str], str]:
        """Dropdown choices for the prompts typed so far: ``(targets, target, contrasts, contrast)``, keeping
        the current selections while they are still among the prompts."""
        prompts = list(dict.fromkeys(line.strip() for line in (prompts_text or "").splitlines() if line.strip()))
        targets, contrasts = [TOP] + prompts, [NONE] + prompts
        return (targets, target if target in targets else TOP, contrasts, contrast if contrast in contrasts else NONE)

    # -- the work ---------------------------------------------------------------------------------
    def check_upload(self, path: str | os.PathLike | None) -> Path:
        """Refuse missing, too large or too long files before decoding them whole."""
        import soundfile as sf

        if not path:
            raise AudioError("no audio: upload or record a clip, or pick an example")
        p = Path(path)
        if not p.is_file():
            raise AudioError("the uploaded file is gone; upload it again")
        mb = p.stat().st_size / 1e6
        if mb > self.max_upload_mb:
            raise AudioError(f"the file is {mb:.1f} MB; the limit is {self.max_upload_mb:g} MB")
        try:
            seconds = sf.info(str(p)).duration
        except Exception:
            raise AudioError(f"cannot read {p.name}: use wav, flac, ogg or mp3") from None
        if seconds > self.max_seconds:
            raise AudioError(f"the clip is {seconds:.1f} s long; the limit is {self.max_seconds:g} s")
        return p

    def explain(self, audio_path: str | os.PathLike | None, prompts_text: str | None, target: str | None = None,
                contrast: str | None = None, baseline: str | None = None) -> DemoResult:
        """Scores, LMAC-ZS explanation and (optionally) a baseline's for one clip. Raises :class:`LmacError`."""
        path = self.check_upload(audio_path)
        prompts = parse_prompts(prompts_text)
        target = None if target in (None, "", TOP) else target
        contrast = None if contrast in (None, "", NONE) else contrast
        e = self.explainer.explain(path, prompts, target=target, contrast=contrast)
        e.source = path.name
        players = _players(e)
        what = f"'{e.prediction}'" + (f" rather than '{e.contrast}'" if e.contrast else "")
        status = (f"Explained {what} (p = {e.scores[e.prediction]:.3f}; mask mean {e.mask_mean:.3f}) in "
                  f"{path.name}, {len(e.audio) / e.sample_rate:.1f} s.")
        if not e.listenable:
            status += " Mel-domain mask: the audio is an approximate resynthesis."
        result = DemoResult(scores=e.scores, status=status, figure=figure_image(e), original=players.get("original"),
                            explanation=players["explanation"], residual=players["residual"], lmac=e)
        if baseline not in (None, "", NONE):
            if baseline not in self.baselines:
                raise LmacError(f"unknown baseline {baseline!r}; available: {', '.join(self.baselines) or 'none'}")
            b = self.explainer.explain_baseline(path, prompts, baseline, target=e.prediction)
            b.source = path.name
            bp = _players(b)
            result.baseline, result.baseline_figure = b, figure_image(b)
            result.baseline_explanation, result.baseline_residual = bp["explanation"], bp["residual"]
            result.status += f" Baseline {baseline} explains '{b.prediction}'"
            result.status += " alone (baselines have no contrast)." if e.contrast else "."
        return result

    def run(self, audio_path, prompts_text, target=None, contrast=None, baseline=None) -> tuple:
        """:meth:`explain` for the page: errors become a message in the status line, outputs are cleared."""
        try:
            return self.explain(audio_path, prompts_text, target, contrast, baseline).outputs()
        except LmacError as exc:
            return DemoResult(scores=None, status=f"**Error:** {exc}").outputs()
        except Exception as exc:  # anything else: one line in the page, the traceback in the server log
            log.exception("explanation failed")
            first = str(exc).splitlines()[0] if str(exc) else ""
            return DemoResult(scores=None, status=f"**Unexpected error** ({type(exc).__name__}: {first}); "
                                                  "details are in the server log.").outputs()


def build_app(demo: Demo):
    """The gradio Blocks page for ``demo`` (not launched)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry requests
    import gradio as gr

    prompts0 = demo.default_prompts()
    targets0, _, contrasts0, _ = demo.choices("\n".join(prompts0))
    baselines = [NONE] + demo.baselines
    with gr.Blocks(title="LMAC-ZS: listen to what a zero-shot audio classifier hears",
                   analytics_enabled=False, delete_cache=(3600, 3600)) as app:  # uploads kept ≤ 2 h
        gr.Markdown("## LMAC-ZS — listenable explanations of a zero-shot audio classifier\n"
                    "Upload or record a clip, write the candidate classes (one prompt per line) and press "
                    "**Explain**: you get the zero-shot scores, the mask LMAC-ZS puts on the spectrogram, and "
                    "the *explanation* (the part of the sound the classifier relies on) and the *residual* "
                    f"(what the mask removed) to listen to.  \n{demo.limits_text()} {demo.model_text()}",
                    elem_id="intro")
        with gr.Row():
            with gr.Column(scale=1):
                audio_in = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio clip",
                                    elem_id="audio-input")
                examples = demo.examples()
                if examples:
                    gr.Examples(examples=[[str(p)] for p in examples], inputs=[audio_in], label="Example clips")
                prompts = gr.Textbox(value="\n".join(prompts0), lines=6, max_lines=30, label="Prompts (one per line)",
                                     elem_id="prompts")
                with gr.Row():
                    target = gr.Dropdown(targets0, value=TOP, label="Explain", elem_id="target")
                    contrast = gr.Dropdown(contrasts0, value=NONE, label="rather than", elem_id="contrast")
                baseline = gr.Dropdown(baselines, value=DEFAULT_BASELINE if DEFAULT_BASELINE in baselines else NONE,
                                       label="Compare with a baseline", elem_id="baseline",
                                       info=None if demo.baselines else "no baselines installed")
                button = gr.Button("Explain", variant="primary", elem_id="explain")
                status = gr.Markdown(demo.limits_text(), elem_id="status")
            with gr.Column(scale=1):
                scores = gr.Label(label="Zero-shot scores", num_top_classes=10, elem_id="scores")
                original = gr.Audio(label="Original (as the model hears it)", interactive=False,
                                    elem_id="audio-original")
        # Figures stacked at full width (same time axis, one above the other), players side by side.
        gr.Markdown("### LMAC-ZS and a baseline, side by side")
        figure = gr.Image(label="LMAC-ZS: spectrogram · mask · masked spectrogram", type="pil", interactive=False,
                          elem_id="figure", format="png", show_label=False)
        b_figure = gr.Image(label="Baseline saliency used as a mask", type="pil", interactive=False,
                            elem_id="baseline-figure", format="png", show_label=False)
        with gr.Row(equal_height=False):
            with gr.Column():
                explanation = gr.Audio(label="LMAC-ZS explanation (what the mask keeps)", interactive=False,
                                       elem_id="audio-explanation")
                residual = gr.Audio(label="LMAC-ZS residual (what the mask removes)", interactive=False,
                                    elem_id="audio-residual")
            with gr.Column():
                b_explanation = gr.Audio(label="Baseline explanation", interactive=False,
                                         elem_id="baseline-explanation")
                b_residual = gr.Audio(label="Baseline residual", interactive=False, elem_id="baseline-residual")

        def update_choices(text, t, c):
            ts, t, cs, c = demo.choices(text, t, c)
            return gr.update(choices=ts, value=t), gr.update(choices=cs, value=c)

        prompts.change(update_choices, [prompts, target, contrast], [target, contrast], queue=False)
        outputs = {"scores": scores, "figure": figure, "original": original, "explanation": explanation,
                   "residual": residual, "baseline_figure": b_figure, "baseline_explanation": b_explanation,
                   "baseline_residual": b_residual, "status": status}
        button.click(demo.run, [audio_in, prompts, target, contrast, baseline],
                     [outputs[name] for name in OUTPUT_ORDER], concurrency_limit=1)
    return app


def serve(demo: Demo, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Build and launch the page (blocks until interrupted)."""
    app = build_app(demo)
    allowed = [str(demo.examples_dir)] if demo.examples() else None
    app.queue(max_size=16).launch(server_name=host, server_port=port, share=False, inbrowser=False,
                                  max_file_size=f"{demo.max_upload_mb:g}mb", allowed_paths=allowed,
                                  ssr_mode=False, show_error=False)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise LmacError("the web demo needs gradio: pip install 'lmaczs[web]'") from None
    from .cli import _explainer

    demo = Demo(_explainer(args, need_decoder=True), max_upload_mb=args.max_upload_mb,
                max_seconds=args.max_seconds, examples_dir=args.examples)
    print(f"LMAC-ZS demo on http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    serve(demo, args.host, args.port)
    return 0


def register_cli(subparsers) -> None:
    """Add ``serve`` to the ``lmac-zs`` command line."""
    from .cli import _add_model_args

    p = subparsers.add_parser("serve", help="web demo: upload or record audio, see and hear explanations")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_MB, help="largest upload in MB (default: 20)")
    p.add_argument("--max-seconds", type=float, default=MAX_SECONDS, help="longest clip in seconds (default: 60)")
    p.add_argument("--examples", default=str(EXAMPLES_DIR), help="folder of example clips (default: shipped ones)")
    _add_model_args(p)
    p.set_defaults(func=cmd_serve)
