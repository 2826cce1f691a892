"""The evaluation (``lmaczs.evaluation``, ``lmac-zs evaluate``) and its parts: conditions, SSIM, Spearman,
localisation, separation, sanity checks, intervals and tests, tables, resume — and the whole evaluation on a few
clips of each dataset with the tiny backend."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ESC50_DIR, SHARED_DATA, TINY_WIDTHS, needs_all_data, needs_esc50
from lmaczs.evaluation.conditions import Conditions, mix_at_snr, snr_db
from lmaczs.evaluation.localization import energy_share, pointing_game, region_frames, splice
from lmaczs.evaluation.sanity import cascading_randomizations, derangement, rankdata, spearman, ssim
from lmaczs.evaluation.separation import ideal_ratio_mask, score_separation, si_sdr
from lmaczs.evaluation.stats import StatsConfig, bootstrap_ci, bootstrap_ci_of, paired_test

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
    from lmaczs.evaluation.methods import build_methods
    from lmaczs.evaluation.sanity import run_sanity

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
    from lmaczs.evaluation.methods import build_methods
    from lmaczs.evaluation.sanity import run_sanity

    monkeypatch.setattr(type(tiny_backend), "randomizable_blocks", ClapBackend.randomizable_blocks)
    methods = build_methods(["lmaczs"], load_decoder(tiny_run.path)[0])
    x, _ = tiny_backend.analyze(torch.randn(2, tiny_backend.num_samples, generator=torch.Generator().manual_seed(0)))
    prompts = ["a", "b", "c"]
    res = run_sanity(tiny_backend, methods, x, torch.tensor([0, 1]), tiny_backend.embed_text(prompts), prompts,
                     tmp_path, prompts_per_clip=3, progress=False)
    assert "randomizable_blocks" in res["cascading"]["skipped"] and "lmaczs" not in res["cascading"]
    assert "cascading" not in res["figures"] and res["similarity"]["lmaczs"]["pairs"] == 6


# -- intervals and paired tests -------------------------------------------------------------------------------
def test_bootstrap_hand_cases():
    assert bootstrap_ci([0.7] * 20) == (0.7, 0.7)  # a constant: zero width
    assert bootstrap_ci([2.5]) == (2.5, 2.5)
    lo, hi = bootstrap_ci([float("nan")] * 3)
    assert math.isnan(lo) and math.isnan(hi)
    assert bootstrap_ci([1.0, float("nan"), 1.0]) == (1.0, 1.0)  # NaNs left out
    rng = np.random.default_rng(0)
    v = rng.normal(5.0, 1.0, 400)
    lo, hi = bootstrap_ci(v, seed=3)
    assert lo < v.mean() < hi
    # about the normal interval mean ± 1.96 σ/√n, and reproducible from its seed
    half = 1.96 * v.std(ddof=1) / math.sqrt(len(v))
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    assert bootstrap_ci(v, seed=3) == (lo, hi) and bootstrap_ci(v, seed=4) != (lo, hi)
    # more clips, a narrower interval; a 0/1 metric stays within [0, 1]
    lo_s, hi_s = bootstrap_ci(v[:25], seed=3)
    assert hi_s - lo_s > hi - lo
    lo01, hi01 = bootstrap_ci([0, 1, 1, 0, 1, 1, 1, 0])
    assert 0 <= lo01 < 0.625 < hi01 <= 1
    # a statistic of resampled units: a constant statistic has zero width
    assert bootstrap_ci_of(10, lambda idx: 3.0, resamples=50) == (3.0, 3.0)


def test_paired_tests_hand_cases():
    a = np.array([0.3, 0.1, 0.8, 0.5, 0.9])
    for method in ("signflip", "wilcoxon"):
        t = paired_test(a, a.copy(), method=method)
        assert t.p == 1.0 and t.mean_diff == 0.0 and t.n == 5 and not t.holds()
    # exact sign flips: three equal positive differences; only all-plus and all-minus reach |Σd| = 3
    t = paired_test([1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    assert t.p == pytest.approx(2 / 8) and t.mean_diff == 1.0
    # differences 2, 1, −1 (|Σ| = 2): the sign patterns with |±2 ±1 ±1| ≥ 2 are 6 of 8
    assert paired_test([2, 1, -1], [0, 0, 0]).p == pytest.approx(6 / 8)
    assert paired_test([1, 1, -1], [0, 0, 0]).p == 1.0  # every pattern reaches |Σ| = 1
    rng = np.random.default_rng(1)
    base = rng.random(40)
    shifted = base + 0.3 + 0.05 * rng.standard_normal(40)
    for method in ("signflip", "wilcoxon"):
        t = paired_test(shifted, base, method=method)
        assert t.p < 0.05 and t.holds() and t.mean_diff == pytest.approx(0.3, abs=0.03), method
    # Monte Carlo sign flips (n > 16): p = (1 + hits) / (1 + R), here no random pattern reaches the shift
    assert paired_test(shifted, base, permutations=999).p == pytest.approx(1 / 1000)
    # pairs with a NaN are left out; no complete pair gives NaN
    t = paired_test([1.0, float("nan"), 3.0], [0.0, 5.0, 2.0])
    assert t.n == 2 and t.mean_diff == 1.0
    assert math.isnan(paired_test([float("nan")], [1.0]).p)
    from lmaczs.errors import LmacError

    with pytest.raises(LmacError, match="one length"):
        paired_test([1, 2], [1])
    with pytest.raises(LmacError, match="signflip or wilcoxon"):
        StatsConfig(test="t-test")


def test_tables_mark_differences_that_hold():
    """Hand-made rows: LMAC-ZS clearly above every baseline on AI and FF, clearly below on AD (lower is better, so
    worse); the best baseline's cells carry °, and a tie with the best baseline is not marked."""
    from lmaczs.evaluation.tables import build_tables, csv_tables, markdown_tables

    rng = np.random.default_rng(0)
    clips = [f"c{i}" for i in range(30)]
    rows = []
    for method, ai, ad, ff in (("lmaczs", 100.0, 60.0, 0.5), ("gradcam", 0.0, 20.0, 0.1), ("ig", 0.0, 10.0, 0.2)):
        for i, c in enumerate(clips):
            rows.append({"condition": "clean", "method": method, "clip": c, "correct": i % 2 == 0,
                         "AI": ai if i % 3 else 0.0, "AD": ad + rng.normal(0, 1), "AG": 1.0, "FF": ff + 0.01 * i,
                         "Fid-In": 1.0, "SPS": 0.5, "COMP": 10.0, "MM": 0.2, "mask_s": 0.1, "total_s": 0.2})
    tables = build_tables(rows, ["clean"], ["lmaczs", "gradcam", "ig"], clips, 50, StatsConfig(resamples=200))
    entry = tables["conditions"]["clean"]
    assert entry["accuracy"] == pytest.approx(50.0) and entry["accuracy_ci"][0] < 50 < entry["accuracy_ci"][1]
    assert entry["tests"]["FF"]["best_baseline"] == "ig" and entry["tests"]["AD"]["best_baseline"] == "ig"
    assert entry["tests"]["FF"]["vs"]["lmaczs"]["holds"] and entry["tests"]["FF"]["vs"]["lmaczs"]["better"]
    assert entry["tests"]["AD"]["vs"]["lmaczs"]["holds"] and not entry["tests"]["AD"]["vs"]["lmaczs"]["better"]
    assert entry["tests"]["AG"]["vs"]["lmaczs"]["p"] == 1.0  # identical values
    assert "MM" not in entry["tests"]  # no direction, no test
    md = markdown_tables(tables)
    line = next(ln for ln in md.splitlines() if ln.startswith("| LMAC-ZS |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    header = next(ln for ln in md.splitlines() if ln.startswith("| method |"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    cell = dict(zip(cols, cells))
    assert cell["FF ↑"].endswith("▲") and cell["AD ↓"].endswith("▼") and cell["AI ↑"].endswith("▲")
    assert "▲" not in cell["AG ↑"] and "▼" not in cell["AG ↑"]
    assert cell["AG ↑"] == "1.00 [1.00, 1.00]"  # a constant: its interval has zero width
    ig_line = next(ln for ln in md.splitlines() if ln.startswith("| IG |"))
    assert ig_line.count("°") >= 2
    assert "bootstrap interval" in md and "uncorrected" in md
    lines = csv_tables(tables).splitlines()
    assert lines[0].startswith("part,group,method,n,column,mean,lo,hi")
    assert len(lines) == 1 + 3 * 10


def _write_run(out, preset: str, rows: list[dict], *, seed: int = 0) -> None:
    from lmaczs.evaluation.methods import baseline_settings

    out.mkdir(parents=True)
    model = {"clap": "tiny", "domain": "stft", "backend_digest": "b", "decoder_digest": "d"}
    settings = {"model": model, "dataset": "esc50", "seed": seed, "snr_db": 3.0, "baseline_settings": preset,
                "baselines": baseline_settings(preset, {})}
    (out / "config.json").write_text(json.dumps({"result_settings": settings}))
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_settings_effect_pairs_the_clips_and_checks_the_runs(tmp_path, capsys):
    """Hand-made logs: IG's AD is 5 points higher at reduced settings on every clip, GradCAM unchanged; the
    comparison uses only the clips both runs hold, and refuses runs of another model or the same settings."""
    from lmaczs.evaluation.settings_effect import main, settings_effect

    rng = np.random.default_rng(1)

    def rows(shift: float, clips: range) -> list[dict]:
        out = []
        for i in clips:
            base = {"AI": 10.0 * (i % 3), "AG": 1.0, "FF": 0.1, "Fid-In": 1.0, "SPS": 0.5, "COMP": 10.0,
                    "MM": 0.2, "del_auc": 0.3, "ins_auc": 0.6}
            ad = 20.0 + i
            out.append({"condition": "clean", "method": "gradcam", "clip": f"c{i}", **base, "AD": ad})
            out.append({"condition": "clean", "method": "ig", "clip": f"c{i}", **base,
                        "AD": ad + shift + rng.normal(0, 0.5)})
            out.append({"condition": "noise", "method": "ig", "clip": f"c{i}", **base, "AD": 99.0})
        return out

    std, red = rows(0.0, range(30)), rows(5.0, range(10, 40))  # 20 clips in common
    effect = settings_effect(std, red, stats=StatsConfig(resamples=200))
    assert effect["clips"] == 20 and list(effect["methods"]) == ["gradcam", "ig"]
    ig, gc = effect["methods"]["ig"]["AD"], effect["methods"]["gradcam"]["AD"]
    assert ig["mean"] == pytest.approx(5.0, abs=0.5) and ig["lo"] < 5.0 < ig["hi"] and ig["holds"]
    assert ig["standard"] == pytest.approx(np.mean([20.0 + i for i in range(10, 30)]), abs=0.5)
    assert gc["mean"] == 0.0 and gc["p"] == 1.0 and not gc["holds"]

    _write_run(tmp_path / "std", "standard", std)
    _write_run(tmp_path / "red", "reduced", red)
    assert main([str(tmp_path / "std"), str(tmp_path / "red"), "--out", str(tmp_path / "effect.md")]) == 0
    md = (tmp_path / "effect.md").read_text()
    assert "20 clips" in md and "| GradCAM |" in md and '"steps": 50' in md and '"steps": 8' in md
    ig_line = next(ln for ln in md.splitlines() if ln.startswith("| IG |"))
    assert "*" in ig_line.split("|")[3]  # the AD cell: the shift holds
    assert json.loads((tmp_path / "effect.json").read_text())["methods"]["ig"]["AD"]["holds"]

    _write_run(tmp_path / "same", "standard", std)
    _write_run(tmp_path / "seed", "reduced", red, seed=1)
    for other, msg in (("same", "same baseline settings"), ("seed", "differ in seed"), ("missing", "no config")):
        assert main([str(tmp_path / "std"), str(tmp_path / other)]) == 2
        assert msg in capsys.readouterr().err


# -- data, subsets, conditions on UrbanSound8K ----------------------------------------------------------------
@needs_all_data
def test_eval_data_finds_the_dataset_by_layout():
    from lmaczs.errors import DataError
    from lmaczs.evaluation.data import seeded_subset, select_eval_data

    esc = select_eval_data(SHARED_DATA / "esc50")
    assert esc.dataset == "esc50" and len(esc.clips) == 193 and len(esc.prompts) == 50
    assert {c.split for c in esc.clips} == {"B"}
    assert len(select_eval_data(SHARED_DATA / "esc50", targets="odd").clips) == 94
    us = select_eval_data(SHARED_DATA / "urbansound8k")
    assert us.dataset == "urbansound8k" and {c.fold for c in us.clips} == {7, 8} and len(us.clips) == 229
    assert len(us.prompts) == 10 and us.prompts[3] == "this is the sound of dog bark"
    assert us.prompts[us.index[us.clips[0].target]].endswith(us.clips[0].label)
    assert {c.fold for c in select_eval_data(SHARED_DATA / "urbansound8k", folds=[7]).clips} == {7}
    for bad, match in (({"targets": "odd"}, "ESC-50's"), ({"split": "B"}, "ESC-50's"),
                       ({"max_clips": 0}, "at least 1")):
        with pytest.raises(DataError, match=match):
            select_eval_data(SHARED_DATA / "urbansound8k", **bad)
    with pytest.raises(DataError, match="several datasets"):
        select_eval_data(SHARED_DATA)
    # a seeded subset is nested and fixed by its seed; partners come from the pool, not from the subset
    small = select_eval_data(SHARED_DATA / "urbansound8k", max_clips=5, seed=0)
    large = select_eval_data(SHARED_DATA / "urbansound8k", max_clips=50, seed=0)
    assert {c.key for c in small.clips} <= {c.key for c in large.clips} and len(small.clips) == 5
    assert [c.key for c in small.clips] == [c.key for c in seeded_subset(us.clips, 5, 0)]
    assert {c.key for c in seeded_subset(us.clips, 5, 1)} != {c.key for c in small.clips}
    assert small.pool == large.pool and small.ranks == large.ranks


@needs_all_data
def test_urbansound8k_conditions(tiny_backend):
    from lmaczs.evaluation.data import select_eval_data

    data = select_eval_data(SHARED_DATA / "urbansound8k")
    cond = Conditions(tiny_backend, data.pool, seed=0, speech_dir=SHARED_DATA / "ljspeech")
    short = min(data.clips, key=lambda c: c.path.stat().st_size)  # a slice far shorter than the window
    for name in ("clean", "mixture", "noise", "speech"):
        wave, what = cond.apply(name, short)
        assert wave.shape == (tiny_backend.num_samples,) and torch.isfinite(wave).all()
    partner = cond.partner(short)
    assert partner.dataset == "urbansound8k" and partner.fold in (7, 8) and partner.target != short.target


def test_separation_scores_hand_cases():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 4000, generator=g)
    b = torch.randn(2, 4000, generator=g)
    a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)  # SI-SDR removes the means
    assert (si_sdr(3.0 * a, a) > 100).all()  # scale-invariant: a scaled copy is perfect
    # an orthogonal error of the reference's power: 0 dB
    e = b - (b * a).sum(-1, keepdim=True) / a.pow(2).sum(-1, keepdim=True) * a
    e = e / e.norm(dim=-1, keepdim=True) * a.norm(dim=-1, keepdim=True)
    assert torch.allclose(si_sdr(a + e, a), torch.zeros(2), atol=1e-3)
    s = score_separation(a, a + b, a, b)  # the perfect explanation: A exactly, the residual exactly B
    assert (s["sdr_a"] > 100).all() and (s["sdr_b"] > 100).all() and (s["sdri_a"] > 90).all()
    stft = torch.randn(1, 5, 7, dtype=torch.complex64, generator=g)
    assert torch.allclose(ideal_ratio_mask(stft, torch.zeros_like(stft), stft), torch.ones(1, 5, 7))
    assert torch.allclose(ideal_ratio_mask(torch.zeros_like(stft), stft, stft), torch.zeros(1, 5, 7))


def test_ig_completeness_error():
    from lmaczs.baselines.integrated_gradients import completeness_error

    attr = torch.tensor([[[1.0, 2.0]], [[0.5, 0.5]]])  # sums 3 and 1
    err = completeness_error(attr, torch.tensor([4.0, 2.0]), torch.tensor([1.0, 0.0]))
    assert torch.allclose(err, torch.tensor([0.0, 0.5]))  # |3 − 3| / 3, |1 − 2| / 2


# -- the whole evaluation on the tiny backend -----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_mel_run(tmp_path_factory, esc50_dir):
    """A decoder for ``tiny:0`` trained briefly in the mel domain (for the --mel-decoder column)."""
    from lmaczs.train import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny_mel") / "run"
    train(TrainConfig(clap="tiny", data=str(esc50_dir), out=str(out), splits=["A"], targets="even", domain="mel",
                      widths=list(TINY_WIDTHS), max_steps=6, batch_size=4, lr=1e-3, val_fraction=0.15,
                      checkpoint_every=6, log_every=6, seed=0, progress=False, baseline="none"))
    return out


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _strict_json(path) -> dict:
    def no_nan(name):
        raise AssertionError(f"{path} holds {name}: not strict JSON")

    return json.loads(path.read_text(), parse_constant=no_nan)


def _check_full_run(out, keys, n_clips, n_prompts, pairings):
    from lmaczs.evaluation.methods import LABELS

    tables = _strict_json(out / "tables.json")
    assert set(tables["conditions"]) == {"clean", "mixture", "noise", "speech"} and tables["prompts"] == n_prompts
    for cond, entry in tables["conditions"].items():
        lo, hi = entry["accuracy_ci"]
        assert 0 <= lo <= entry["accuracy"] <= hi <= 100 and entry["clips"] == n_clips
        for key in keys:
            cell = entry["methods"][key]["MM"]
            assert cell["lo"] <= cell["mean"] <= cell["hi"] and entry["methods"][key]["n"] == n_clips
        assert entry["tests"]["FF"]["best_baseline"] not in ("lmaczs", "lmaczs-mel")
        assert 0 < entry["tests"]["FF"]["vs"]["lmaczs"]["p"] <= 1
        assert 0 <= entry["ig_completeness"]["median"] and entry["ig_completeness"]["n"] == n_clips
    rows = _rows(out / "results.jsonl")
    assert len(rows) == 4 * len(keys) * n_clips
    assert all("ig_completeness" in r for r in rows if r["method"] == "ig")
    loc = tables["localization"]
    assert list(loc["pairings"]) == pairings
    for entry in loc["pairings"].values():
        assert entry["items"] == n_clips and 0 <= entry["region_fraction"] <= 1
        assert set(entry["methods"]) == set(keys)
    assert len(_rows(out / "localization.jsonl")) == len(pairings) * len(keys) * n_clips
    sep = tables["separation"]
    assert sep["items"] == n_clips and sep["methods_order"][-1] == "irm"
    irm = sep["methods"]["irm"]
    assert irm["sdri_a"]["mean"] > 3 and irm["sdri_a"]["mean"] > sep["methods"]["lmaczs"]["sdri_a"]["mean"]
    assert sep["tests"]["sdri_a"]["best_baseline"] != "irm"
    assert len(_rows(out / "separation.jsonl")) == (len(keys) + 1) * n_clips
    san = tables["sanity"]
    assert san["clips"] == min(3, n_clips) and san["intervals"]["shutoff"]["lmaczs"]["mm_pred"][0] <= \
        san["shutoff"]["lmaczs"]["mm_pred"]
    report = (out / "report.md").read_text()
    for part in ("## Faithfulness", "## Integrated Gradients: completeness error", "## Ground-truth localisation",
                 "## Separation", "## Sanity checks", "bootstrap interval"):
        assert part in report, part
    for key in keys:
        assert f"| {LABELS[key]} |" in report
    assert "| ideal ratio mask (ceiling) |" in report and " [" in report
    for name in san["figures"].values():
        assert (out / name).stat().st_size > 1000
    return tables


@needs_all_data
def test_full_evaluation_esc50_and_resume(tiny_run, tmp_path, monkeypatch, capsys):
    """Every part (conditions, metrics, intervals, sanity, localisation with three pairings, separation, tables) on
    three ESC-50 clips; a rerun computes nothing, a crash mid-line costs only that line."""

    import lmaczs.evaluation.faithfulness as faith
    from lmaczs.cli import main
    from lmaczs.evaluation.methods import ALL_METHODS

    out = tmp_path / "eval"
    args = ["evaluate", "--decoder", str(tiny_run.path), "--data", str(ESC50_DIR), "--out", str(out),
            "--limit", "3", "--quiet", "--curve-steps", "4", "--localization", "--separation", "--sanity",
            "--sanity-clips", "3", "--bootstrap", "200", "--threads", "1"]
    assert main(args) == 0
    tables = _check_full_run(out, list(ALL_METHODS), 3, 50, ["esc50", "urbansound8k", "speech"])
    assert tables["settings"]["baseline_settings"] == "standard"
    assert tables["settings"]["baselines"]["ig"]["steps"] == 50
    assert tables["settings"]["baselines"]["smoothgrad"]["samples"] == 50
    assert tables["settings"]["baselines"]["smoothgrad"]["noise"] == 0.15
    assert tables["settings"]["baselines"]["scorecam"]["max_channels"] == 64
    md = (out / "tables.md").read_text()
    for cond in ("clean", "mixture", "noise", "speech"):
        assert f"### {cond} — zero-shot accuracy" in md
    rows = _rows(out / "results.jsonl")
    for r in rows:
        assert 0 <= r["MM"] <= 1 and r["AI"] in (0.0, 100.0)
        # deletion/insertion curves: on the clean condition only by default (their cost)
        assert (0 <= r["del_auc"] <= 1 and 0 <= r["ins_auc"] <= 1) if r["condition"] == "clean" \
            else "del_auc" not in r
    partners = {r["partner"].split("/")[0] for r in _rows(out / "localization.jsonl")}
    assert partners == {"esc50", "urbansound8k", "ljspeech"}
    speech = [r for r in _rows(out / "localization.jsonl") if r["pairing"] == "speech"]
    assert all(101 <= int(r["partner"].split("-")[-1]) <= 150 for r in speech)

    # resume: a rerun computes nothing; a crash mid-line loses only that line
    calls = []
    real = faith.score_method
    monkeypatch.setattr(faith, "score_method", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    resume = [a for a in args if a not in ("--sanity",)]
    assert main(resume) == 0
    assert calls == []
    text = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(text[:-2]) + text[-2][:25])  # last row gone, one cut in half
    assert main(resume) == 0
    assert len(calls) == 1 and len(calls[0]) == 2  # one method batch, only the two missing clips
    rows2 = _rows(out / "results.jsonl")
    assert len(rows2) == len(rows) and rows2[:-2] == rows[:-2]

    # another seed changes the contaminants, other baseline settings the baselines: refuse to mix them in
    capsys.readouterr()
    assert main(args + ["--seed", "1"]) == 2
    assert "settings differ" in capsys.readouterr().err
    assert main(args + ["--baseline-settings", "reduced"]) == 2
    assert "baselines" in capsys.readouterr().err


@needs_all_data
def test_full_evaluation_urbansound8k_with_mel_decoder(tiny_run, tiny_mel_run, tmp_path):
    """Every part on three UrbanSound8K slices (a seeded subset of folds 7–8), reduced baseline settings, with a
    mel-domain decoder beside the STFT one; then one page over both datasets."""

    from lmaczs.cli import main
    from lmaczs.evaluation.methods import ALL_METHODS
    from lmaczs.evaluation.report import main as report_main

    out = tmp_path / "urbansound8k"
    args = ["evaluate", "--decoder", str(tiny_run.path), "--data", str(SHARED_DATA / "urbansound8k"),
            "--out", str(out), "--max-clips", "3", "--quiet", "--localization", "--separation", "--sanity",
            "--sanity-clips", "3", "--bootstrap", "200", "--baseline-settings", "reduced",
            "--mel-decoder", str(tiny_mel_run), "--threads", "1"]
    assert main(args) == 0
    keys = ["lmaczs", "lmaczs-mel"] + [k for k in ALL_METHODS if k != "lmaczs"]
    tables = _check_full_run(out, keys, 3, 10, ["esc50", "urbansound8k", "speech"])
    assert tables["settings"]["baselines"]["ig"]["steps"] == 8
    assert tables["data"]["folds"] == [7, 8] and tables["data"]["max_clips"] == 3
    clips = {r["clip"] for r in _rows(out / "results.jsonl")}
    from lmaczs.evaluation.data import select_eval_data

    assert clips == {c.filename for c in select_eval_data(SHARED_DATA / "urbansound8k", max_clips=3).clips}
    mel = [r for r in _rows(out / "results.jsonl") if r["method"] == "lmaczs-mel"]
    assert len(mel) == 12 and all(0 <= r["MM"] <= 1 for r in mel)
    assert tables["settings"]["model"]["mel_digest"]
    # one page over several runs, figure links relative to the page
    page = tmp_path / "report.md"
    assert report_main([str(out), str(out), "--out", str(page)]) == 0
    text = page.read_text()
    assert text.count("## LMAC-ZS evaluation: UrbanSound8K") == 2 and "](urbansound8k/sanity_" in text


@needs_all_data
@needs_all_data
def test_run_evaluation_script_budget_plan(tiny_run, tmp_path):
    """tools/run_evaluation.sh, PLAN=budget, on both datasets: the clean condition at standard settings, the rest
    at reduced settings on a nested subset, and the settings comparison: IG changes with its steps, LMAC-ZS
    (the same masks in both runs) does not; an unknown plan is refused before any work."""
    import os
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "tools" / "run_evaluation.sh"
    env = {**os.environ, "PLAN": "budget", "STANDARD_CLIPS": "3", "REDUCED_CLIPS": "2", "OUT": str(tmp_path / "ev"),
           "DATA": str(SHARED_DATA), "THREADS": "1", "PYTHON": sys.executable}
    args = ["--decoder", str(tiny_run.path), "--methods", "lmaczs,ig", "--quiet", "--bootstrap", "50",
            "--sanity-clips", "2", "--pairings", "speech"]
    done = subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    ev = tmp_path / "ev"
    for dataset in ("esc50", "urbansound8k"):
        std, red = _strict_json(ev / f"{dataset}-standard" / "tables.json"), _strict_json(ev / dataset / "tables.json")
        assert list(std["conditions"]) == ["clean"] and std["clips"] == 3 and std["settings"]["baselines"]["ig"]["steps"] == 50
        assert set(red["conditions"]) == {"clean", "mixture", "noise", "speech"} and red["clips"] == 2
        assert red["settings"]["baselines"]["ig"]["steps"] == 8 and "localization" in red and "sanity" in red
        effect = json.loads((ev / f"{dataset}-settings.json").read_text())
        assert effect["clips"] == 2  # the reduced subset lies inside the standard one
        assert all(effect["methods"]["lmaczs"][k]["mean"] == 0 for k in ("AI", "AD", "FF", "MM"))
        assert any(effect["methods"]["ig"][k]["mean"] != 0 for k in ("AD", "FF", "MM", "SPS"))
    report = (ev / "report.md").read_text()
    assert report.count("baselines at standard settings") == 2 and report.count("baselines at reduced settings") == 2

    bad = subprocess.run(["bash", str(script)], env={**env, "PLAN": "cheap"}, capture_output=True, text=True)
    assert bad.returncode == 2 and "PLAN must be full or budget" in bad.stderr


def test_evaluate_refuses_bad_input_before_loading(tmp_path, capsys):
    from lmaczs.cli import main

    cases = {
        "root": (["--data", str(SHARED_DATA)], "several datasets"),
        "us8k targets": (["--data", str(SHARED_DATA / "urbansound8k"), "--targets", "odd"], "ESC-50's"),
        "folds": (["--data", str(SHARED_DATA / "urbansound8k"), "--folds", "9"], "no UrbanSound8K slices"),
        "pairing": (["--localization", "--pairings", "esc50,birds"], "pairing"),
        "max clips": (["--max-clips", "0"], "--max-clips"),
        "bootstrap": (["--bootstrap", "0"], "--bootstrap"),
        "speech": (["--speech", str(tmp_path / "none")], "speech folder not found"),
        "mel without run": (["--methods", "lmaczs,lmaczs-mel"], "--mel-decoder"),
    }
    for what, (extra, match) in cases.items():
        code = main(["evaluate", "--out", str(tmp_path / "e"), "--quiet", "--data", str(ESC50_DIR), *extra])
        err = capsys.readouterr().err
        assert code == 2 and match in err and len(err.strip().splitlines()) == 1, (what, err)
    assert not (tmp_path / "e").exists()


def test_evaluate_entry_point_still_registers_the_command():
    """The evaluation moved into ``lmaczs.evaluation``; ``lmaczs.evaluate`` still registers the command."""
    import lmaczs.evaluate as ev
    from lmaczs import evaluation

    assert ev.register_cli is evaluation.register_cli and ev.run_evaluation is evaluation.run_evaluation
    assert evaluation.si_sdr is si_sdr
    with pytest.raises(AttributeError):
        evaluation.no_such_name
