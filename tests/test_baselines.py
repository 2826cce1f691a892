"""Saliency baselines: shapes/range, determinism, batch consistency, a frozen backend, hand-checkable cases."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmaczs.baselines import METHODS, ScoreCam, SmoothGrad, get_method
from lmaczs.baselines.gradcam_pp import gradcam_pp_map
from lmaczs.clap import load_backend
from lmaczs.clap.base import AudioEncoding
from lmaczs.errors import LmacError

# small settings keep the file fast; defaults are exercised in test_default_options
FAST = {"scorecam": {"max_channels": 8}, "smoothgrad": {"samples": 3}, "ig": {"steps": 4}}


@pytest.fixture(scope="module")
def tiny():
    return load_backend("tiny")


@pytest.fixture(scope="module")
def batch(tiny):
    """Three synthetic clips (tones + noise) in the STFT masking domain, prompts and targets."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(tiny.num_samples) / tiny.sample_rate
    tones = ((440, 1.0), (1200, 2.0), (300, 0.5))  # (Hz, seconds on)
    waves = torch.stack([torch.sin(2 * torch.pi * f * t) * (t < d) for f, d in tones])
    waves = 0.5 * waves + 0.05 * torch.randn(waves.shape, generator=g)
    x, _ = tiny.analyze(waves)
    te = tiny.embed_text(["a dog barking", "rain falling", "a siren", "birds chirping"])
    return x, te, torch.tensor([0, 2, 3])


@pytest.mark.parametrize("name", list(METHODS))
def test_shape_range_determinism_and_batch_consistency(tiny, batch, name):
    x, te, target = batch
    x_before = x.clone()
    method = get_method(name, **FAST.get(name, {}))
    out = method(tiny, x, te, target)
    assert out.shape == x.shape and out.dtype == x.dtype and not out.requires_grad
    peaks = out.amax(dim=(1, 2))
    assert torch.isfinite(out).all() and out.min() == 0 and peaks.max() == 1
    assert ((peaks == 0) | (peaks == 1)).all()  # min-max normalised, or all zero (e.g. a CAM fully ReLU'd away)
    assert torch.equal(x, x_before)
    torch.testing.assert_close(method(tiny, x, te, target), out, rtol=0, atol=0)  # deterministic
    single = torch.cat([method(tiny, x[b:b + 1], te, target[b:b + 1]) for b in range(len(x))])
    torch.testing.assert_close(single, out, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(METHODS))
def test_backend_is_not_modified(tiny, batch, name):
    x, te, target = batch
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    flags = [p.requires_grad for p in tiny.parameters()]
    with torch.no_grad():  # gradient methods must work whatever the caller's grad mode
        get_method(name, **FAST.get(name, {}))(tiny, x[:1], te, target[:1])
    assert all(torch.equal(v, state[k]) for k, v in tiny.state_dict().items())
    assert [p.requires_grad for p in tiny.parameters()] == flags
    assert all(p.grad is None for p in tiny.parameters())
    assert not tiny.training and not tiny._forward_hooks and not tiny._backward_hooks


def test_target_changes_gradient_maps(tiny, batch):
    x, te, _ = batch
    a = get_method("saliency")(tiny, x[:1], te, torch.tensor([0]))
    b = get_method("saliency")(tiny, x[:1], te, torch.tensor([1]))
    assert (a - b).abs().max() > 1e-3


def test_smoothgrad_seed_and_rng(tiny, batch):
    x, te, target = batch
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = SmoothGrad(samples=3, seed=0)(tiny, x[:1], te, target[:1])
    assert torch.equal(torch.rand(1), expected_next)  # the caller's RNG stream is untouched
    b = SmoothGrad(samples=3, seed=1)(tiny, x[:1], te, target[:1])
    assert (a - b).abs().max() > 1e-4


class _Counting:
    """Forwards to a backend and counts the clips it encodes."""

    def __init__(self, backend):
        self.backend, self.clips = backend, 0

    @property
    def logit_scale(self):
        return self.backend.logit_scale

    def encode_spec(self, x):
        self.clips += x.shape[0]
        return self.backend.encode_spec(x)


def test_scorecam_caps_channels(tiny, batch):
    x, te, target = batch
    counting = _Counting(tiny)
    ScoreCam(max_channels=5, batch_size=4)(counting, x[:2], te, target[:2])
    assert counting.clips == 2 + 2 * 5  # one clean pass + 5 masked passes per clip


def test_registry_errors():
    assert set(METHODS) == {"gradcam", "gradcam++", "scorecam", "saliency", "smoothgrad", "ig"}
    with pytest.raises(LmacError, match="unknown saliency method 'lime'"):
        get_method("lime")
    with pytest.raises(LmacError, match="bad options"):
        get_method("ig", stepz=3)


def test_default_options():
    assert get_method("scorecam").max_channels == 64
    sg = get_method("smoothgrad")
    assert (sg.samples, sg.noise) == (8, 0.1)
    assert get_method("ig").steps == 16


def test_bad_targets_are_rejected(tiny, batch):
    x, te, _ = batch
    with pytest.raises(LmacError, match="targets must index"):
        get_method("gradcam")(tiny, x[:1], te, torch.tensor([7]))
    with pytest.raises(LmacError, match="2 targets for 1 clips"):
        get_method("gradcam")(tiny, x[:1], te, torch.tensor([0, 1]))
    torch.testing.assert_close(get_method("saliency")(tiny, x[:2], te, 1),
                               get_method("saliency")(tiny, x[:2], te, torch.tensor([1, 1])))


# -- hand-checkable stubs ------------------------------------------------------------------------------------
class _Stub(nn.Module):
    """Backend-like: logit of prompt 0 = ``head(hidden)``; prompt 1 has a constant logit."""

    def __init__(self, hidden_fn, head):
        super().__init__()
        self.hidden_fn, self.head = hidden_fn, head
        self.unused = nn.Linear(2, 2)  # a parameter that must stay untouched
        self.register_buffer("logit_scale", torch.tensor(1.0))

    def encode_spec(self, x):
        hidden = self.hidden_fn(x)
        emb = torch.stack([self.head(hidden), torch.ones(x.shape[0])], dim=1)
        return AudioEncoding(emb, [hidden])


EYE = torch.eye(2)


def test_saliency_ig_smoothgrad_highlight_the_only_region_that_matters():
    stub = _Stub(lambda x: x.unsqueeze(1), lambda h: (h[:, 0, 2:4, 1:3] ** 2).sum(dim=(1, 2)))
    x = torch.rand(2, 6, 5, generator=torch.Generator().manual_seed(0)) + 0.1
    region = torch.zeros(6, 5, dtype=torch.bool)
    region[2:4, 1:3] = True
    before = {k: v.clone() for k, v in stub.state_dict().items()}
    for name in ("saliency", "ig", "smoothgrad"):
        m = get_method(name)(stub, x, EYE, torch.tensor([0, 0]))
        assert m[:, ~region].eq(0).all(), name
        assert (m[:, region] > 0).all() and m.amax(dim=(1, 2)).eq(1).all(), name
    sal = get_method("saliency")(stub, x, EYE, torch.tensor([0, 0]))
    torch.testing.assert_close(sal[:, region], (x / x[:, region].amax(1)[:, None, None])[:, region])  # |2x|
    assert all(torch.equal(v, before[k]) for k, v in stub.state_dict().items())


def test_gradcam_equals_hand_computation():
    # hidden A = [x, 1 - x] (2 channels on the full 2×3 grid), y = Σ_c V_c Σ A_c² / 2 with V = [1, -2]:
    # ∂y/∂A_c = V_c A_c, α = V_c·mean(A_c) = [3.5/6, -2·2.5/6], cam = ReLU(α0·x + α1·(1 − x)) = ReLU(17/12·x − 5/6)
    x = torch.tensor([[[0.0, 0.5, 1.0], [0.25, 0.75, 1.0]]])
    v = torch.tensor([1.0, -2.0])
    stub = _Stub(lambda x: torch.stack([x, 1 - x], dim=1),
                 lambda h: (v[None, :, None, None] * h ** 2 / 2).sum(dim=(1, 2, 3)))
    cam = get_method("gradcam")(stub, x, EYE, torch.tensor([0]))
    # raw: [[0, 0, 7/12], [0, 0.2291667, 7/12]] → divided by 7/12
    torch.testing.assert_close(cam, torch.tensor([[[0.0, 0.0, 1.0], [0.0, 0.39285714, 1.0]]]))


def test_gradcam_upsamples_bilinearly_to_the_mask_grid():
    # A = mean of each half of the frequency axis (1×2 map), y = Σ A: cam = ReLU(A) = [0, 1] on a 1×2 grid;
    # bilinear 2 → 4 (align_corners=False) samples it at [-0.25, 0.25, 0.75, 1.25] → [0, 0.25, 0.75, 1]
    x = torch.tensor([[[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]])
    stub = _Stub(lambda x: F.avg_pool2d(x.unsqueeze(1), (2, 2)), lambda h: h.sum(dim=(1, 2, 3)))
    cam = get_method("gradcam")(stub, x, EYE, torch.tensor([0]))
    torch.testing.assert_close(cam, torch.tensor([[0.0, 0.25, 0.75, 1.0]]).expand(1, 2, 4))


def test_gradcam_pp_closed_form_by_hand():
    # channel 0: A = [1, 3], g = 2: α = 4 / (2·4 + (1+3)·8) = 0.1, w = Σ α·ReLU(g) = 0.4 → map 0.4·A = [0.4, 1.2]
    # channel 1: g = -1 < 0 → weight 0
    a = torch.tensor([[[[1.0, 3.0]], [[1.0, 1.0]]]])
    g = torch.tensor([[[[2.0, 2.0]], [[-1.0, -1.0]]]])
    torch.testing.assert_close(gradcam_pp_map(a, g), torch.tensor([[[0.4, 1.2]]]), atol=1e-5, rtol=0)


def test_gradcam_matches_captum_layer_gradcam_on_the_tiny_backend(tiny, batch):
    from captum.attr import LayerGradCam

    from lmaczs.baselines import normalize_maps, similarity_logits
    from lmaczs.baselines.base import upsample

    x, te, target = batch
    ours = get_method("gradcam")(tiny, x, te, target)
    ref = LayerGradCam(lambda z: similarity_logits(tiny, z, te), tiny.blocks[3]).attribute(
        x.clone().requires_grad_(True), target=target, relu_attributions=True).detach()
    torch.testing.assert_close(ours, normalize_maps(upsample(ref, tuple(x.shape[1:])).squeeze(1)))
