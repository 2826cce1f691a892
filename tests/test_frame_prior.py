"""The decoder's frame prior (``--frame-prior``): a frozen copy of the CLAP's own audio head, applied frame by frame.

What must hold: the frame head really is the backend's head (it reproduces the clip embedding), it is frozen and
travels with the decoder's weights, a backend without one is refused in one line, and on real spliced recordings
whose answer is known the prior alone already puts the mask on the prompted half.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_WIDTHS, esc50_paths, needs_esc50
from lmaczs.audio import load_audio
from lmaczs.checkpoint import load_decoder, save_decoder
from lmaczs.clap import load_backend
from lmaczs.clap.projection import Projection
from lmaczs.datasets import eval_prompt, read_esc50
from lmaczs.cli import main
from lmaczs.decoder import build_decoder
from lmaczs.errors import ConfigError
from lmaczs.evaluation.localization import energy_share, region_frames, splice
from lmaczs.train import lzs_step


def _head(backend) -> Projection:
    spec, state = backend.frame_head()
    head = Projection(**spec)
    head.load_state_dict(state)
    return head.eval()


@pytest.mark.parametrize("spec", ["tiny:3", "esc50-eval"])
def test_frame_head_reproduces_the_clip_embedding(spec):
    """embedding = normalize(head(max_t mean_f hidden[-1])): the head is the backend's own, on its own pooling."""
    backend = load_backend(spec)
    wave = torch.randn(2, backend.num_samples, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        enc = backend.encode_spec(backend.analyze(backend.prepare(wave))[0])
        frames = enc.hidden[-1].mean(dim=3)  # (B, C, T_4)
        again = F.normalize(_head(backend)(frames.amax(dim=2)), dim=-1)
    torch.testing.assert_close(again, enc.embedding, atol=1e-5, rtol=1e-4)


def test_frame_prior_is_frozen_saved_and_reloaded(tiny_backend, tmp_path):
    torch.manual_seed(0)
    decoder = build_decoder(tiny_backend, True, widths=TINY_WIDTHS)
    head = dict(decoder.frame_head.state_dict())
    assert not any(p.requires_grad for p in decoder.frame_head.parameters())
    for k, v in _head(tiny_backend).state_dict().items():
        torch.testing.assert_close(head[k], v)
    wave = torch.randn(4, tiny_backend.num_samples, generator=torch.Generator().manual_seed(1))
    text = tiny_backend.embed_text(["a dog barks", "rain", "a siren", "speech"])
    opt = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    before = {k: v.clone() for k, v in decoder.state_dict().items()}
    for _ in range(2):
        terms = lzs_step(tiny_backend, decoder, wave, text, 0.1, 0.0, baseline="silence")
        opt.zero_grad()
        terms.total.backward()
        opt.step()
    after = decoder.state_dict()
    for k, v in head.items():
        torch.testing.assert_close(after[f"frame_head.{k}"], v)  # the CLAP's head never trains
    assert not torch.equal(after["prior_gain"], before["prior_gain"])  # its calibration does
    save_decoder(tmp_path, decoder, {"backend": tiny_backend.describe()})
    loaded, _ = load_decoder(tmp_path)
    with torch.no_grad():
        hidden = tiny_backend.encode_spec(tiny_backend.analyze(wave)[0]).hidden
        torch.testing.assert_close(loaded(text, hidden), decoder.eval()(text, hidden))


def test_prior_follows_the_prompt(tiny_backend):
    """Two prompts, one clip: the prior map is the cosine of each frame with each prompt, so it differs."""
    decoder = build_decoder(tiny_backend, True, widths=TINY_WIDTHS)
    wave = torch.randn(1, tiny_backend.num_samples, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        deepest = tiny_backend.encode_spec(tiny_backend.analyze(wave)[0]).hidden[-1].expand(2, -1, -1, -1)
        prior = decoder.frame_prior(tiny_backend.embed_text(["a dog barks", "church bells"]), deepest)
    assert prior.shape == (2, 1, *deepest.shape[2:])
    assert prior.abs().max() <= 1 + 1e-6 and (prior[0] - prior[1]).abs().max() > 1e-3
    assert build_decoder(tiny_backend, widths=TINY_WIDTHS).frame_prior(None, deepest) is None


def test_backend_without_frame_head_is_refused(tiny_backend, monkeypatch, tmp_path, capsys, esc50_dir):
    monkeypatch.setattr(type(tiny_backend), "frame_head", lambda self: None)
    with pytest.raises(ConfigError, match="frame head"):
        build_decoder(tiny_backend, True, widths=TINY_WIDTHS)
    out = tmp_path / "run"
    code = main(["train", "--clap", "tiny", "--data", str(esc50_dir), "--out", str(out), "--max-steps", "1",
                 "--frame-prior", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "frame head" in err[0]
    assert not (out / "checkpoint.safetensors").exists()


@needs_esc50
def test_prior_alone_finds_the_prompted_half_of_a_real_splice():
    """Known answer: an untrained decoder with the frame prior of the embedded CLAP puts most of the mask on the
    half that holds the prompted recording (either half), where one without it sits near chance."""
    backend = load_backend("esc50-eval")
    paths = esc50_paths(6)  # six classes, one clip each (fold 4)
    clips = [backend.fit_window(load_audio(p, backend.sample_rate, min_seconds=0)) for p in paths]
    names = {c.path.name: c.category for c in read_esc50(paths[0].parents[1])}
    hop = backend.front.stft.hop_length
    torch.manual_seed(0)
    shares = {True: [], False: []}
    for prior in (True, False):
        decoder = build_decoder(backend, prior).eval()
        for k in range(len(clips)):
            a, b = clips[k], clips[(k + 1) % len(clips)]
            sp = splice(a, b, backend.num_samples, k % 2 == 0, hop)
            with torch.no_grad():
                x, _ = backend.analyze(backend.prepare(sp.wave[None]))
                enc = backend.encode_spec(x)
                m = decoder(backend.embed_text([eval_prompt(names[paths[k].name])]), enc.hidden)
            shares[prior].append(float(energy_share(m, region_frames(sp.span, x.shape[1], hop)[None])[0]))
    with_prior, without = sum(shares[True]) / 6, sum(shares[False]) / 6
    assert with_prior > 0.7 and with_prior > without + 0.15, (shares[True], shares[False])
