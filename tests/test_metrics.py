"""Metrics on small hand-computed cases, plus consistency checks with the tiny backend."""

import math

import numpy as np
import pytest
import scipy.stats
import torch

from lmaczs.evaluation import metrics as M
from lmaczs.clap import load_backend

P = torch.tensor([[0.6, 0.4], [0.3, 0.7]])
P_IN = torch.tensor([[0.7, 0.3], [0.55, 0.45]])
P_OUT = torch.tensor([[0.1, 0.9], [0.4, 0.6]])
C = torch.tensor([0, 1])


def test_probability_metrics_by_hand():
    torch.testing.assert_close(M.average_increase(P, P_IN, C), torch.tensor([100.0, 0.0]))
    # AD: ex0 rises (0), ex1: (0.7 - 0.45) / 0.7
    torch.testing.assert_close(M.average_drop(P, P_IN, C), torch.tensor([0.0, 100 * 0.25 / 0.7]))
    # AG: ex0: (0.7 - 0.6) / (1 - 0.6), ex1 drops (0)
    torch.testing.assert_close(M.average_gain(P, P_IN, C), torch.tensor([25.0, 0.0]))
    torch.testing.assert_close(M.faithfulness(P, P_OUT, C), torch.tensor([0.5, 0.1]))
    torch.testing.assert_close(M.input_fidelity(P_IN, C), torch.tensor([1.0, 0.0]))


def test_average_drop_speechbrain_double_softmax_variant():
    pc = 1 / (1 + math.exp(0.3 - 0.7))           # softmax([0.3, 0.7])[1]
    oc = 1 / (1 + math.exp(0.55 - 0.45))         # softmax([0.55, 0.45])[1]
    got = M.average_drop(P, P_IN, C, sb_double_softmax=True)
    torch.testing.assert_close(got, torch.tensor([0.0, 100 * (pc - oc) / pc]))
    assert got[1] < M.average_drop(P, P_IN, C)[1]  # the double softmax shrinks AD


def test_certain_clean_prediction_gives_finite_gain():
    p = torch.tensor([[1.0, 0.0]])
    assert M.average_gain(p, p, torch.tensor([0])).item() == 0.0
    assert M.average_drop(torch.tensor([[0.0, 1.0]]), p, torch.tensor([0])).item() == 0.0


def test_sparseness_hand_cases():
    masks = torch.tensor([[[1.0, 0.0], [0.0, 0.0]],     # one hot: (n-1)/n up to the 1e-7 offset
                          [[0.5, 0.5], [0.0, 0.0]],     # half: 0.5
                          [[0.3, 0.3], [0.3, 0.3]]])    # uniform: 0
    e = 1e-7
    expected = torch.tensor([3 / (4 * (1 + 4 * e)), 4 / (4 * (2 + 4 * e)), 0.0])
    torch.testing.assert_close(M.sparseness(masks), expected)
    torch.testing.assert_close(M.sparseness(3 * masks), M.sparseness(masks))  # normalised by the max


def quantus_gini(a: np.ndarray) -> float:
    """Quantus 0.5.3 Sparseness on one attribution (abs, normalise_by_max, +1e-7, sorted Gini)."""
    a = np.abs(a).reshape(-1).astype(np.float64)
    a = a / np.max(a) + 1e-7
    a = np.sort(a)
    n = a.shape[0]
    return float(np.sum((2 * np.arange(1, n + 1) - n - 1) * a) / (n * np.sum(a)))


def test_sparseness_and_complexity_match_reference_formulas_on_random_masks():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(3, 7, 5, generator=g) ** 3
    masks[1, :3] = 0.0
    sps, comp = M.sparseness(masks), M.complexity(masks)
    for b in range(3):
        a = masks[b].numpy()
        assert sps[b].item() == pytest.approx(quantus_gini(a), rel=1e-5)
        q = np.abs(a).reshape(-1) / np.abs(a).sum()
        assert comp[b].item() == pytest.approx(scipy.stats.entropy(q), rel=1e-5)


def test_complexity_hand_cases_and_all_zero_masks():
    masks = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]], [[2.0, 2.0], [2.0, 2.0]],
                          [[0.0, 0.0], [0.0, 0.0]]])
    comp = M.complexity(masks)
    torch.testing.assert_close(comp[:3], torch.tensor([math.log(2), 0.0, math.log(4)]))
    assert comp[3].isnan() and M.sparseness(masks)[3].isnan()  # SpeechBrain skips all-zero masks
    torch.testing.assert_close(M.mask_mean(masks), torch.tensor([0.5, 0.25, 2.0, 0.0]))


def test_summarize_skips_nans():
    out = M.summarize({"COMP": torch.tensor([1.0, math.nan, 3.0]), "AI": torch.tensor([100.0, 0.0]),
                       "SPS": torch.tensor([math.nan])})
    assert out["COMP"] == 2.0 and out["AI"] == 50.0 and math.isnan(out["SPS"])
    resumed = M.summarize({"COMP": [torch.tensor([1.0, math.nan]), torch.tensor([3.0])], "MM": []})
    assert resumed["COMP"] == 2.0 and math.isnan(resumed["MM"])


def _sum_probs(z):
    """p_c = (sum of X) / 10 for X built from [[4, 3], [2, 1]]."""
    s = z.sum(dim=(1, 2)) / 10
    return torch.stack([s, 1 - s], dim=1)


def test_deletion_and_insertion_curves_by_hand():
    x = torch.tensor([[4.0, 3.0], [2.0, 1.0]]).expand(2, 2, 2)
    masks = torch.stack([x[0] / 4, 1 - x[0] / 4])  # ex0 ranks large values first, ex1 small ones first
    c = torch.tensor([0, 0])
    frac, curve = M.perturbation_curve(_sum_probs, x, masks, c, mode="deletion", steps=4)
    torch.testing.assert_close(frac, torch.linspace(0, 1, 5))
    torch.testing.assert_close(curve, torch.tensor([[1.0, 0.6, 0.3, 0.1, 0.0], [1.0, 0.9, 0.7, 0.4, 0.0]]))
    # trapezoid, h = 1/4: ex0 0.25·(0.5 + 0.6 + 0.3 + 0.1 + 0) = 0.375, ex1 0.25·(0.5 + 0.9 + 0.7 + 0.4) = 0.625
    torch.testing.assert_close(M.deletion_auc(_sum_probs, x, masks, c, steps=4), torch.tensor([0.375, 0.625]))
    # insertion onto zeros: ex0 inserts 4, 3, 2, 1 → [0, .4, .7, .9, 1]
    torch.testing.assert_close(M.insertion_auc(_sum_probs, x, masks, c, steps=4), torch.tensor([0.625, 0.375]))


def test_perturbation_steps_that_do_not_divide_the_grid():
    x = torch.tensor([[4.0, 3.0], [2.0, 1.0]]).unsqueeze(0)
    _, curve = M.perturbation_curve(_sum_probs, x, x / 4, torch.tensor([0]), mode="deletion", steps=3)
    # round(k/3 · 4) = 0, 1, 3, 4 elements removed
    torch.testing.assert_close(curve, torch.tensor([[1.0, 0.6, 0.1, 0.0]]))


@pytest.fixture(scope="module")
def tiny():
    return load_backend("tiny")


def test_zero_shot_probs_and_identity_mask(tiny):
    g = torch.Generator().manual_seed(1)
    x, _ = tiny.analyze(0.1 * torch.randn(3, tiny.num_samples, generator=g))
    te = tiny.embed_text(["dog barking", "rain", "a car horn"])
    with torch.no_grad():
        p = M.zero_shot_probs(tiny, x, te)
        emb = tiny.encode_spec(x).embedding
        torch.testing.assert_close(p, torch.softmax(tiny.logit_scale * emb @ te.T, dim=-1))
        c = p.argmax(dim=1)
        ones = torch.ones_like(x)
        per = M.per_example_metrics(p, M.zero_shot_probs(tiny, ones * x, te),
                                    M.zero_shot_probs(tiny, (1 - ones) * x, te), c, ones)
    assert set(per) == {"AI", "AD", "AG", "FF", "Fid-In", "SPS", "COMP", "MM"}
    assert all(v.shape == (3,) for v in per.values())
    # the full mask keeps the input: no drop, no gain, same prediction, uniform mask (SPS 0, COMP = ln n)
    assert per["AI"].eq(0).all() and per["AD"].eq(0).all() and per["AG"].eq(0).all() and per["Fid-In"].eq(1).all()
    torch.testing.assert_close(per["COMP"], torch.full((3,), math.log(x[0].numel())))
    assert per["SPS"].abs().max() < 1e-6
    # deleting everything and inserting nothing are both silence
    probs_fn = lambda z: M.zero_shot_probs(tiny, z, te)  # noqa: E731
    _, dele = M.perturbation_curve(probs_fn, x, torch.rand(x.shape, generator=g), c, steps=5)
    _, ins = M.perturbation_curve(probs_fn, x, torch.rand(x.shape, generator=g), c, mode="insertion", steps=5)
    torch.testing.assert_close(dele[:, -1], ins[:, 0])
    torch.testing.assert_close(dele[:, 0], p.gather(1, c[:, None])[:, 0])  # nothing deleted yet
