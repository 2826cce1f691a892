"""L_ZS on hand-made tensors, each expected number worked out by hand, and against a loop-by-loop reference."""

import itertools

import pytest
import torch

from lmaczs.loss import lzs_loss

# B = 2, D = 2. Text i, clean audio j, and e_ij = the embedding of audio j masked under text i.
T = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
A = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
E = torch.tensor([[[1.0, 0.0], [0.0, 1.0]],      # e_00, e_01
                  [[0.6, 0.8], [0.0, 1.0]]])     # e_10, e_11
MASKS = torch.tensor([0.0, 0.2, 0.4, 0.6]).view(2, 2, 1, 1).expand(2, 2, 3, 4)  # mean 0.3


def test_similarity_term_by_hand():
    # C = T Aᵀ = [[0.6, 0.8], [0.8, 0.6]];  t_iᵀ e_ij = [[1, 0], [0.8, 1]]
    # |C − t·e| = [[0.4, 0.8], [0.0, 0.4]] → mean 0.4
    terms = lzs_loss(T, A, E, MASKS, lambda1=0.0, lambda2=0.0)
    assert terms.similarity.item() == pytest.approx(0.4)
    assert terms.total.item() == pytest.approx(0.4)


def test_sparsity_term_is_the_mean_mask():
    terms = lzs_loss(T, A, E, MASKS, lambda1=0.0, lambda2=0.0)
    assert terms.sparsity.item() == pytest.approx(0.3)


def test_diversity_term_by_hand():
    # pairs i ≠ j: |t_iᵀ t_j − e_iiᵀ e_ji| with t_0ᵀ t_1 = 0
    #   i=0, j=1: e_00ᵀ e_10 = [1,0]·[0.6,0.8] = 0.6 → 0.6
    #   i=1, j=0: e_11ᵀ e_01 = [0,1]·[0,1]     = 1.0 → 1.0          mean 0.8
    # (pairing e_ii with e_ij instead would give (0 + 0.8) / 2 = 0.4)
    terms = lzs_loss(T, A, E, MASKS, lambda1=0.0, lambda2=0.0)
    assert terms.diversity.item() == pytest.approx(0.8)


def test_diversity_compares_against_text_text_similarity():
    t = torch.tensor([[1.0, 0.0], [0.6, 0.8]])  # t_0ᵀ t_1 = 0.6
    # e_00ᵀ e_10 = 0.6 → |0.6 − 0.6| = 0;  e_11ᵀ e_01 = [0,1]·[0,1] = 1 → |0.6 − 1| = 0.4; mean 0.2
    terms = lzs_loss(t, A, E, MASKS, lambda1=0.0, lambda2=0.0)
    assert terms.diversity.item() == pytest.approx(0.2)


def test_lambda_weights():
    terms = lzs_loss(T, A, E, MASKS, lambda1=0.5, lambda2=2.0)
    assert terms.total.item() == pytest.approx(0.4 + 0.5 * 0.3 + 2.0 * 0.8)
    no_div = lzs_loss(T, A, E, MASKS, lambda1=0.5, lambda2=0.0)
    assert no_div.total.item() == pytest.approx(0.4 + 0.5 * 0.3)
    assert no_div.diversity.item() == pytest.approx(0.8)  # still reported
    assert set(terms.as_floats()) == {"total", "similarity", "sparsity", "diversity"}


def test_batch_of_one_has_no_diversity():
    t, a = T[:1], A[:1]
    e = torch.tensor([[[0.8, 0.6]]])
    masks = torch.full((1, 1, 2, 2), 0.25)
    terms = lzs_loss(t, a, e, masks, lambda1=1.0, lambda2=5.0)
    assert terms.diversity.item() == 0.0
    # |t_0ᵀ a_0 − t_0ᵀ e_00| = |0.6 − 0.8| = 0.2;  total = 0.2 + 1.0 · 0.25
    assert terms.similarity.item() == pytest.approx(0.2)
    assert terms.total.item() == pytest.approx(0.45)


def _reference(text, audio, masked, masks, l1, l2):
    b = text.shape[0]
    sim = sum(abs(float(text[i] @ audio[j]) - float(text[i] @ masked[i, j]))
              for i, j in itertools.product(range(b), repeat=2)) / b ** 2
    pairs = [(i, j) for i, j in itertools.product(range(b), repeat=2) if i != j]
    div = sum(abs(float(text[i] @ text[j]) - float(masked[i, i] @ masked[j, i])) for i, j in pairs) / len(pairs)
    return sim + l1 * float(masks.mean()) + l2 * div, sim, div


def test_random_batch_matches_loop_reference_and_backpropagates():
    g = torch.Generator().manual_seed(0)
    norm = torch.nn.functional.normalize
    b, d = 3, 5
    text, audio = norm(torch.randn(b, d, generator=g), dim=-1), norm(torch.randn(b, d, generator=g), dim=-1)
    masked = norm(torch.randn(b, b, d, generator=g), dim=-1).requires_grad_(True)
    masks = torch.rand(b, b, 4, 6, generator=g).requires_grad_(True)
    terms = lzs_loss(text, audio, masked, masks, lambda1=0.3, lambda2=0.7)
    total, sim, div = _reference(text, audio, masked.detach(), masks.detach(), 0.3, 0.7)
    assert terms.similarity.item() == pytest.approx(sim, abs=1e-6)
    assert terms.diversity.item() == pytest.approx(div, abs=1e-6)
    assert terms.total.item() == pytest.approx(total, abs=1e-6)
    terms.total.backward()
    assert masked.grad.abs().sum() > 0
    torch.testing.assert_close(masks.grad, torch.full_like(masks, 0.3 / masks.numel()))


# -- silence baseline: evidence above the empty input ------------------------------------------------------

def test_silence_baseline_by_hand():
    # b = [0.7, 0.7]; C − b = [[−0.1, 0.1], [0.1, −0.1]] → target max(·, 0) = [[0, 0.1], [0.1, 0]]
    # t·e − b = [[0.3, −0.7], [0.1, 0.3]];  |target − (t·e − b)| = [[0.3, 0.8], [0.0, 0.3]] → mean 0.35
    terms = lzs_loss(T, A, E, MASKS, lambda1=0.0, lambda2=0.0, baseline=torch.tensor([0.7, 0.7]))
    assert terms.similarity.item() == pytest.approx(0.35)
    # the other terms do not depend on the baseline
    plain = lzs_loss(T, A, E, MASKS, lambda1=0.5, lambda2=2.0)
    with_b = lzs_loss(T, A, E, MASKS, lambda1=0.5, lambda2=2.0, baseline=torch.tensor([0.7, 0.7]))
    assert with_b.diversity.item() == pytest.approx(plain.diversity.item())
    assert with_b.sparsity.item() == pytest.approx(plain.sparsity.item())


def test_silence_baseline_makes_the_empty_mask_exact_for_unrelated_pairs():
    # text [1, 0] vs a clip it does not describe (C = 0); silence embeds as s with tᵀs = 0.6 > C.
    t, a, s = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0.6, 0.8])
    empty = s.view(1, 1, 2)  # an all-zero mask gives the silence embedding
    masks = torch.zeros(1, 1, 2, 2)
    assert lzs_loss(t, a, empty, masks, 0.0, 0.0, baseline=t @ s).similarity.item() == pytest.approx(0.0)
    assert lzs_loss(t, a, empty, masks, 0.0, 0.0).similarity.item() == pytest.approx(0.6)  # the paper's term
    # keeping the clip (e = a) now costs |0 − (0 − 0.6)| = 0.6: the empty mask is the better explanation
    assert lzs_loss(t, a, a.view(1, 1, 2), masks, 0.0, 0.0, baseline=t @ s).similarity.item() == pytest.approx(0.6)


def test_silence_baseline_matches_loop_reference():
    g = torch.Generator().manual_seed(1)
    norm = torch.nn.functional.normalize
    b, d = 3, 5
    text, audio = norm(torch.randn(b, d, generator=g), dim=-1), norm(torch.randn(b, d, generator=g), dim=-1)
    masked = norm(torch.randn(b, b, d, generator=g), dim=-1)
    base = torch.randn(b, generator=g) * 0.3
    ref = sum(abs(max(float(text[i] @ audio[j] - base[i]), 0.0) - float(text[i] @ masked[i, j] - base[i]))
              for i, j in itertools.product(range(b), repeat=2)) / b ** 2
    terms = lzs_loss(text, audio, masked, torch.rand(b, b, 2, 2, generator=g), 0.0, 0.0, baseline=base)
    assert terms.similarity.item() == pytest.approx(ref, abs=1e-6)
