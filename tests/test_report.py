"""The self-contained HTML report: embedded players and figure, escaped text, nothing external, atomic write."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import soundfile as sf

from lmaczs.errors import LmacError
from lmaczs.explain import Explainer
from lmaczs.report import render_report, write_report
from web_fixtures import esc50_clip, make_tiny_run

PROMPTS = ["dog barking", "rain <b>&amp; wind</b>", "church bells"]


@pytest.fixture(scope="module")
def explanations(tmp_path_factory):
    clip = esc50_clip("dog")
    if clip is None:
        pytest.skip("real audio absent: ../shared/data/esc50 not found")
    ex = Explainer.load(None, make_tiny_run(tmp_path_factory.mktemp("run")))
    return [ex.explain(clip, PROMPTS), ex.explain(clip, PROMPTS, target=PROMPTS[0], contrast=PROMPTS[2])]


def _uris(html: str, kind: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(rf'src="data:{kind};base64,([A-Za-z0-9+/=]+)"', html)]


def test_report_embeds_players_and_figures(explanations, tmp_path):
    path = write_report(explanations, tmp_path / "nested" / "report.html")
    assert path == tmp_path / "nested" / "report.html"
    html = path.read_text(encoding="utf-8")
    wavs, pngs = _uris(html, "audio/wav"), _uris(html, "image/png")
    assert len(wavs) == 3 * len(explanations)  # original, explanation, residual each
    assert len(pngs) == len(explanations)
    e = explanations[0]
    clips = [sf.read(io.BytesIO(w), dtype="float32") for w in wavs[:3]]
    assert all(sr == e.sample_rate and len(x) == len(e.audio) for x, sr in clips)
    # The explanation player holds the explanation (16-bit, one common gain: none needed when peaks ≤ 1).
    peak = max(np.abs(e.original).max(), np.abs(e.audio).max(), np.abs(e.residual).max())
    scale = 1 / peak if peak > 1 else 1.0
    np.testing.assert_allclose(clips[0][0], e.original * scale, atol=2e-4)
    np.testing.assert_allclose(clips[1][0], e.audio * scale, atol=2e-4)
    np.testing.assert_allclose(clips[2][0], e.residual * scale, atol=2e-4)
    from PIL import Image

    img = Image.open(io.BytesIO(pngs[0]))
    assert img.format == "PNG" and img.width > 500 and img.height > 150


def test_report_is_offline_and_escapes_text(explanations):
    html = render_report(explanations)
    assert not re.search(r"https?://", html, re.IGNORECASE)
    assert "<script" not in html.lower() and "<link" not in html.lower() and "@import" not in html
    assert "rain &lt;b&gt;&amp;amp; wind&lt;/b&gt;" in html and "<b>&amp; wind</b>" not in html
    for p in ("dog barking", "church bells"):
        assert p in html
    e = explanations[1]
    assert f"“{e.prediction}” rather than “{e.contrast}”" in html
    for prompt, p in explanations[0].scores.items():  # every score is listed with its value
        assert f"{p:.3f}" in html
    assert explanations[0].backend["spec"] in html
    assert html.count("<audio controls") == 6


def test_write_report_is_atomic_and_refuses_nothing(explanations, tmp_path):
    path = tmp_path / "r.html"
    path.write_text("old")
    write_report(explanations[:1], path)
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temp file left behind
    with pytest.raises(LmacError, match="no explanations"):
        write_report([], tmp_path / "empty.html")
    assert not (tmp_path / "empty.html").exists()
