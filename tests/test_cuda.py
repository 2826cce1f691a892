"""The CUDA paths: explanations, baselines and a training step on a GPU match the CPU. Skipped without CUDA
(CI has none; run on a GPU machine with ``python -m pytest tests/test_cuda.py``)."""

import numpy as np
import pytest
import torch

from conftest import TINY_WIDTHS
from lmaczs.clap import load_backend
from lmaczs.decoder import build_decoder
from lmaczs.explain import Explainer
from lmaczs.train import lzs_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _pair() -> tuple[Explainer, Explainer]:
    torch.manual_seed(0)
    decoder = build_decoder(load_backend("tiny"), widths=TINY_WIDTHS)
    state = decoder.state_dict()
    cuda = build_decoder(load_backend("tiny"), widths=TINY_WIDTHS)
    cuda.load_state_dict(state)
    return Explainer(load_backend("tiny"), decoder), Explainer(load_backend("tiny"), cuda, device="cuda")


def test_explanation_on_cuda_matches_cpu():
    cpu, gpu = _pair()
    rng = np.random.default_rng(0)
    audio = rng.standard_normal(cpu.clap.num_samples).astype(np.float32) * 0.1
    prompts = ["dog barking", "rain", "a siren"]
    a = cpu.explain(audio, prompts, sample_rate=cpu.clap.sample_rate)
    b = gpu.explain(audio, prompts, sample_rate=cpu.clap.sample_rate)
    assert b.prediction == a.prediction
    for p in prompts:
        assert b.scores[p] == pytest.approx(a.scores[p], abs=1e-4)
    assert np.abs(np.asarray(b.mask) - np.asarray(a.mask)).max() < 1e-3
    assert np.abs(np.asarray(b.audio) - np.asarray(a.audio)).max() < 1e-3


def test_training_step_on_cuda_matches_cpu():
    cpu, gpu = _pair()
    waves = torch.randn(2, cpu.clap.num_samples) * 0.1
    text = torch.nn.functional.normalize(torch.randn(2, cpu.clap.embed_dim), dim=-1)
    for baseline in ("none", "silence"):
        a = lzs_step(cpu.clap, cpu.decoder, waves, text, 0.1, 1.0, baseline=baseline)
        b = lzs_step(gpu.clap, gpu.decoder, waves.cuda(), text.cuda(), 0.1, 1.0, baseline=baseline)
        assert b.total.item() == pytest.approx(a.total.item(), abs=1e-4)
        b.total.backward()
        assert all(p.grad is None or p.grad.is_cuda for p in gpu.decoder.parameters())


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "ig", "saliency", "scorecam"])  # not smoothgrad: its
# noise comes from each device's own generator
def test_baselines_on_cuda_match_cpu(method):
    cpu, gpu = _pair()
    audio = np.random.default_rng(1).standard_normal(cpu.clap.num_samples).astype(np.float32) * 0.1
    prompts = ["dog barking", "rain"]
    a = cpu.explain_baseline(audio, prompts, method, target="rain", sample_rate=cpu.clap.sample_rate)
    b = gpu.explain_baseline(audio, prompts, method, target="rain", sample_rate=cpu.clap.sample_rate)
    assert np.abs(np.asarray(b.mask) - np.asarray(a.mask)).max() < 1e-3
