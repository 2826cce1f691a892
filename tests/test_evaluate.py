"""The evaluation command and its parts: conditions, SSIM, Spearman, localisation, sanity checks, resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import ESC50_DIR, SHARED_DATA, needs_esc50
from lmaczs.conditions import Conditions, mix_at_snr, snr_db
from lmaczs.localization import energy_share, pointing_game, region_frames, splice
from lmaczs.sanity import cascading_randomizations, derangement, rankdata, spearman, ssim

LJSPEECH = SHARED_DATA / "ljspeech"
needs_ljspeech = pytest.mark.skipif(not (LJSPEECH / "wavs").is_dir(),
                                    reason=f"LJ Speech audio not found at {LJSPEECH}")


# -- conditions ---------------------------------------------------------------------------------------------
def test_mix_at_snr_is_exact_and_peak_normalised():
    g = torch.Generator().manual_seed(1)
    s = torch.sin(torch.linspace(0, 400, 8000)) * torch.linspace(0, 1, 8000)
    n = 3.0 * torch.randn(8000, generator=g)
    for target in (3.0, -5.0, 12.0):
        mix = mix_at_snr(s, n, target)
        assert torch.allclose(mix.wave, mix.signal + mix.noise, atol=1e-6)
        assert float(mix.wave.abs().max()) == pytest.approx(1.0, abs=1e-6)
        assert float(snr_db(mix.signal, mix.noise)) == pytest.approx(target, abs=1e-4)
        # the parts are scaled copies of the inputs (no filtering)
        assert float(torch.nn.functional.cosine_similarity(mix.signal, s, dim=0)) == pytest.approx(1.0, abs=1e-6)


def _fit_snr(mixture: torch.Tensor, s: torch.Tensor, n: torch.Tensor) -> float:
    """SNR of a mixture measured against its sources: least squares ``mixture ≈ a·s + b·n``."""
    basis = torch.stack([s, n], dim=1).double()
    coef = torch.linalg.lstsq(basis, mixture.double()[:, None]).solution[:, 0]
    resid = mixture.double() - basis @ coef
    assert float(resid.norm() / mixture.double().norm()) < 1e-5  # it really is a two-source mixture
    return float(20 * torch.log10((coef[0] * s.double()).norm() / (coef[1] * n.double()).norm()))


@needs_esc50
@needs_ljspeech
def test_conditions_are_deterministic_and_at_3_db(tiny_backend):
    from lmaczs.datasets import read_esc50, select

    pool = select(read_esc50(ESC50_DIR), splits=["B"])
    clips = select(pool, targets="odd")[:2]
    cond = Conditions(tiny_backend, pool, seed=0, speech_dir=LJSPEECH)
    again = Conditions(tiny_backend, list(reversed(pool)), seed=0, speech_dir=LJSPEECH)  # order-independent
    other_seed = Conditions(tiny_backend, pool, seed=1, speech_dir=LJSPEECH)
    clip = clips[0]
    clean, what = cond.apply("clean", clip)
    assert what == "" and clean.shape == (tiny_backend.num_samples,)
    for name in ("mixture", "noise", "speech"):
        wave, what = cond.apply(name, clip)
        assert wave.shape == (tiny_backend.num_samples,)
        assert torch.equal(wave, again.apply(name, clip)[0]), name
        assert not torch.equal(wave, other_seed.apply(name, clip)[0]), name
        assert float(wave.abs().max()) == pytest.approx(1.0, abs=1e-6)
        noise, _ = cond.contaminant(name, clip)
        assert _fit_snr(wave, clean, noise) == pytest.approx(3.0, abs=0.01), name
    partner = cond.partner(clip)
    assert partner.target != clip.target and partner.split == "B"
    assert cond.contaminant("mixture", clips[0])[1] == partner.filename
    # LJ Speech is resampled to the backend's rate and fills the window with real speech
    speech, ids = cond.speech(clip)
    assert ids.startswith("LJ") and float(speech.abs().max()) > 0.05
    # only the held-out utterances LJ001-0101 … 0150 (1 … 100 train the models)
    assert {int(p.stem[6:]) for p in cond.speech_files()} == set(range(101, 151))
    assert all(101 <= int(u[6:10]) <= 150 for u in ids.replace(",", " ").split() if u.startswith("LJ001-"))
    assert not torch.equal(cond.noise(clips[0]), cond.noise(clips[1]))


# -- SSIM and Spearman --------------------------------------------------------------------------------------
def test_ssim_hand_cases():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 40, 30, generator=g)
    assert torch.allclose(ssim(a, a), torch.ones(3))
    b = torch.rand(3, 40, 30, generator=g)
    assert torch.allclose(ssim(a, b), ssim(b, a))
    assert (ssim(a, b).abs() < 0.2).all()  # independent noise: hardly any structure in common
    assert (ssim(a, 1 - a) < -0.5).all()  # inverted structure
    # constant images: SSIM = (2·u·v + C1) / (u² + v² + C1) (no variance, no covariance)
    u, v, c1 = 0.2, 0.6, 0.01 ** 2
    got = float(ssim(torch.full((20, 20), u), torch.full((20, 20), v)))
    assert got == pytest.approx((2 * u * v + c1) / (u * u + v * v + c1), rel=1e-6)


def test_ssim_matches_a_direct_gaussian_weighted_computation():
    # an 11×11 image has exactly one valid window position: SSIM = the Gaussian-weighted global formula
    rng = np.random.default_rng(3)
    a, b = rng.random((11, 11)), rng.random((11, 11))
    k = np.arange(11) - 5
    g = np.exp(-k ** 2 / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    ma, mb = (w * a).sum(), (w * b).sum()
    va, vb = (w * a * a).sum() - ma ** 2, (w * b * b).sum() - mb ** 2
    cov = (w * a * b).sum() - ma * mb
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    want = (2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))
    assert float(ssim(torch.tensor(a), torch.tensor(b))) == pytest.approx(want, rel=1e-5)


def test_spearman_helper():
    assert list(rankdata([10, 20, 20, 30])) == [1.0, 2.5, 2.5, 4.0]
    x, y = [1, 2, 2, 3], [1, 3, 2, 4]
    rx, ry = np.array([1, 2.5, 2.5, 4]), np.array([1, 3, 2, 4])
    want = np.corrcoef(rx, ry)[0, 1]
    assert spearman(x, y) == pytest.approx(want)
    rng = np.random.default_rng(0)
    v = rng.random(50)
    assert spearman(v, np.exp(3 * v)) == pytest.approx(1.0)  # any increasing map
    assert spearman(v, -v ** 3) == pytest.approx(-1.0)
    from scipy.stats import spearmanr

    w = rng.random(50).round(1)  # with ties
    assert spearman(v, w) == pytest.approx(spearmanr(v, w).statistic)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_derangement_has_no_fixed_point():
    for seed in range(5):
        perm = derangement(50, seed)
        assert sorted(perm) == list(range(50)) and all(i != p for i, p in enumerate(perm))
    assert derangement(50, 0) == derangement(50, 0)


# -- localisation -------------------------------------------------------------------------------------------
def test_localization_hand_case():
    region = torch.tensor([[True] * 4 + [False] * 6])  # A owns the first 4 of 10 frames
    inside = torch.zeros(1, 10, 3)
    inside[0, :4] = 1.0
    assert float(energy_share(inside, region)) == pytest.approx(1.0)
    assert float(pointing_game(inside, region)) == 1.0
    uniform = torch.full((1, 10, 3), 0.3)
    assert float(energy_share(uniform, region)) == pytest.approx(0.4)  # chance = A's share of the frames
    assert float(pointing_game(uniform, region)) == 0.5  # a tie points nowhere
    wrong = uniform.clone()
    wrong[0, 7, 1] = 0.9
    assert float(pointing_game(wrong, region)) == 0.0
    assert float(energy_share(wrong, region)) == pytest.approx(4 * 3 * 0.09 / (30 * 0.09 - 0.09 + 0.81))
    assert math.isnan(float(energy_share(torch.zeros(1, 10, 3), region)))


def test_splice_places_a_at_equal_loudness():
    n, hop = 8000, 100
    t = torch.arange(n) / 8000
    a = torch.sin(2 * torch.pi * 440 * t) * (t > 0.5)  # loud only in its second half
    b = 0.01 * torch.randn(n, generator=torch.Generator().manual_seed(0))
    for first in (True, False):
        sp = splice(a, b, n, first, hop)
        lo, hi = sp.span
        assert (lo, hi) == ((0, n // 2) if first else (n // 2, n))
        part_a = sp.wave[lo:hi]
        part_b = torch.cat([sp.wave[:lo], sp.wave[hi:]])
        assert float(part_a.pow(2).mean() / part_b.pow(2).mean()) == pytest.approx(1.0, rel=1e-3)
        crest = float(part_a.abs().max() / part_a.pow(2).mean().sqrt())
        assert crest == pytest.approx(math.sqrt(2), rel=0.01)  # A's loud half (a pure tone), not its silence
        frames = region_frames(sp.span, n // hop + 1, hop)
        assert int(frames.sum()) == n // 2 // hop and bool(frames[0]) == first


# -- sanity -------------------------------------------------------------------------------------------------
def test_cascading_randomisation_leaves_the_backend_alone(tiny_backend):
    from lmaczs.clap.base import ClapBackend
    from lmaczs.errors import BackendError

    before = {k: v.clone() for k, v in tiny_backend.state_dict().items()}
    x, _ = tiny_backend.analyze(0.1 * torch.randn(2, tiny_backend.num_samples,
                                                  generator=torch.Generator().manual_seed(0)))
    emb0 = tiny_backend.encode_spec(x).embedding
    seen = []
    for k, model in cascading_randomizations(tiny_backend, seed=0):
        blocks = model.randomizable_blocks()
        changed = [not torch.equal(b.state_dict()["0.weight"], o.state_dict()["0.weight"])
                   for b, o in zip(blocks, tiny_backend.randomizable_blocks())]
        assert changed == [i >= 4 - k for i in range(4)]  # top down, cumulative
        seen.append(float((model.encode_spec(x).embedding - emb0).abs().max()))
    assert len(seen) == 4 and min(seen) > 1e-3
    assert all(torch.equal(v, tiny_backend.state_dict()[k]) for k, v in before.items())
    with pytest.raises(BackendError, match="randomizable_blocks"):
        ClapBackend.randomizable_blocks(tiny_backend)


@needs_esc50
def test_sanity_checks_on_tiny(tiny_backend, tiny_run, tmp_path):
    from lmaczs.checkpoint import load_decoder
    from lmaczs.methods import build_methods
    from lmaczs.sanity import run_sanity

    decoder, _ = load_decoder(tiny_run.path)
    methods = build_methods(["lmaczs", "gradcam++"], decoder)
    g = torch.Generator().manual_seed(0)
    x, _ = tiny_backend.analyze(torch.randn(3, tiny_backend.num_samples, generator=g))
    prompts = [f"this is the sound of thing {i}" for i in range(6)]
    text = tiny_backend.embed_text(prompts)
    res = run_sanity(tiny_backend, methods, x, torch.tensor([0, 1, 2]), text, prompts, tmp_path,
                     prompts_per_clip=4, progress=False)
    assert res["pairs"] == 12
    for key in ("lmaczs", "gradcam++"):
        curve = res["cascading"][key]["ssim"]
        assert len(curve) == 5 and curve[0] == 1.0 and all(-1 <= v <= 1 for v in curve)
        assert -1 <= res["similarity"][key]["spearman"] <= 1
        assert 0 <= res["shutoff"][key]["mm_pred"] <= 1
    assert res["cascading"]["lmaczs"]["ssim"][-1] < 0.999  # a randomised model changes the LMAC-ZS mask
    for name in res["figures"].values():
        assert (tmp_path / name).stat().st_size > 1000


@needs_esc50
def test_sanity_skips_cascading_for_a_backend_without_blocks(tiny_backend, tiny_run, tmp_path, monkeypatch):
    from lmaczs.checkpoint import load_decoder
    from lmaczs.clap.base import ClapBackend
    from lmaczs.methods import build_methods
    from lmaczs.sanity import run_sanity

    monkeypatch.setattr(type(tiny_backend), "randomizable_blocks", ClapBackend.randomizable_blocks)
    methods = build_methods(["lmaczs"], load_decoder(tiny_run.path)[0])
    x, _ = tiny_backend.analyze(torch.randn(2, tiny_backend.num_samples, generator=torch.Generator().manual_seed(0)))
    prompts = ["a", "b", "c"]
    res = run_sanity(tiny_backend, methods, x, torch.tensor([0, 1]), tiny_backend.embed_text(prompts), prompts,
                     tmp_path, prompts_per_clip=3, progress=False)
    assert "randomizable_blocks" in res["cascading"]["skipped"] and "lmaczs" not in res["cascading"]
    assert "cascading" not in res["figures"] and res["similarity"]["lmaczs"]["pairs"] == 6


# -- the command ----------------------------------------------------------------------------------------------
@needs_esc50
@needs_ljspeech
def test_evaluate_command_tables_and_resume(tiny_run, tmp_path, monkeypatch, capsys):
    import lmaczs.evaluate as ev
    from lmaczs.cli import main
    from lmaczs.methods import ALL_METHODS, LABELS

    out = tmp_path / "eval"
    args = ["evaluate", "--decoder", str(tiny_run.path), "--data", str(ESC50_DIR), "--out", str(out),
            "--limit", "3", "--quiet", "--curve-steps", "4", "--localization"]
    assert main(args) == 0
    md = (out / "tables.md").read_text()
    for cond in ("clean", "mixture", "noise", "speech"):
        assert f"### {cond} — zero-shot accuracy" in md
    for key in ALL_METHODS:
        assert f"| {LABELS[key]} |" in md
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * 4 * len(ALL_METHODS)
    assert len({(r["condition"], r["method"], r["clip"]) for r in rows}) == len(rows)
    for r in rows:
        assert 0 <= r["MM"] <= 1 and r["AI"] in (0.0, 100.0)
        # deletion/insertion curves: on the clean condition only by default (their cost)
        assert (0 <= r["del_auc"] <= 1 and 0 <= r["ins_auc"] <= 1) if r["condition"] == "clean" \
            else "del_auc" not in r
    csv_lines = (out / "tables.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 4 * len(ALL_METHODS)
    def no_nan(name):
        raise AssertionError(f"tables.json holds {name}: not strict JSON")

    tables = json.loads((out / "tables.json").read_text(), parse_constant=no_nan)
    assert set(tables["conditions"]) == {"clean", "mixture", "noise", "speech"}
    assert 0 <= tables["conditions"]["clean"]["accuracy"] <= 100
    assert tables["localization"]["methods"]["lmaczs"]["n"] == 3
    assert "## Ground-truth localisation" in (out / "report.md").read_text()

    # resume: a rerun computes nothing; a crash mid-line loses only that line
    calls = []
    real = ev.score_method
    monkeypatch.setattr(ev, "score_method", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    assert main(args) == 0
    assert calls == []
    text = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(text[:-2]) + text[-2][:25])  # last row gone, one cut in half
    assert main(args) == 0
    assert len(calls) == 1 and len(calls[0]) == 2  # one method batch, only the two missing clips
    rows2 = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows2) == len(rows) and rows2[:-2] == rows[:-2]

    # another seed changes the contaminants: refuse to mix it into the same results
    capsys.readouterr()
    assert main(args + ["--seed", "1"]) == 2
    assert "settings differ" in capsys.readouterr().err
