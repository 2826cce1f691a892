"""Error bars and paired tests for the evaluation tables: the uncertainty that comes from which clips were drawn.

- :func:`bootstrap_ci`: a percentile bootstrap interval of a mean (clips resampled with replacement, seeded).
  Every table cell uses the same seed, so all methods see the same resampled clip sets.
- :func:`bootstrap_ci_of`: the same for any statistic of a set of units (e.g. a Spearman ρ over the (clip, prompt)
  pairs of the resampled clips).
- :func:`paired_test`: is method A's per-clip value different from method B's on the same clips? A sign-flip
  permutation test of the mean difference (exact for up to 16 clips, Monte Carlo above), or Wilcoxon's
  signed-rank test (scipy). Both are two-sided; clips where either value is NaN are left out.

A difference "holds at 95 %" when the paired test gives p < 0.05. The tables test every cell on its own (no
correction for the number of cells), and say so.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np

from ..errors import LmacError

RESAMPLES = 1000  # bootstrap resamples per cell
PERMUTATIONS = 10000  # Monte Carlo sign flips of a paired test (above EXACT_MAX clips)
EXACT_MAX = 16  # up to this many pairs, all 2^n sign patterns are enumerated
LEVEL = 0.95
ALPHA = 0.05

TestMethod = Literal["signflip", "wilcoxon"]


def finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """``(n,)`` float64 values without NaN / inf."""
    a = np.asarray(values, dtype=float).reshape(-1)
    return a[np.isfinite(a)]


def _check(resamples: int, level: float) -> None:
    if resamples < 1:
        raise LmacError(f"bootstrap resamples must be at least 1, got {resamples}")
    if not 0 < level < 1:
        raise LmacError(f"confidence level must lie in (0, 1), got {level}")


def bootstrap_ci(values: Sequence[float] | np.ndarray, *, resamples: int = RESAMPLES, level: float = LEVEL,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values (n,)`` (NaNs dropped first).

    Returns ``(lo, hi)``: NaN for no value, ``(v, v)`` for one value or a constant sample (zero width).
    """
    _check(resamples, level)
    a = finite(values)
    if not len(a):
        return math.nan, math.nan
    if np.all(a == a[0]):
        return float(a[0]), float(a[0])
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // len(a))  # bound the index matrix to ~16 MB
    for s in range(0, resamples, chunk):
        k = min(chunk, resamples - s)
        means[s:s + k] = a[rng.integers(0, len(a), size=(k, len(a)))].mean(axis=1)
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(lo), float(hi)


def bootstrap_ci_of(n_units: int, statistic: Callable[[np.ndarray], float], *, resamples: int = RESAMPLES,
                    level: float = LEVEL, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(indices)`` over ``n_units`` resampled units.

    ``statistic`` gets ``(n_units,)`` unit indices drawn with replacement and returns a float (NaN results are
    left out of the quantiles). Returns ``(lo, hi)`` (NaN when no resample gives a finite value).
    """
    _check(resamples, level)
    if n_units < 1:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    stats = np.array([statistic(rng.integers(0, n_units, size=n_units)) for _ in range(resamples)], dtype=float)
    stats = stats[np.isfinite(stats)]
    if not len(stats):
        return math.nan, math.nan
    tail = (1 - level) / 2
    lo, hi = np.quantile(stats, [tail, 1 - tail])
    return float(lo), float(hi)


@dataclass(frozen=True)
class PairedTest:
    """Result of :func:`paired_test`: two-sided ``p``, ``mean_diff = mean(a − b)`` over the ``n`` complete pairs."""

    p: float
    mean_diff: float
    n: int
    method: str

    def holds(self, alpha: float = ALPHA) -> bool:
        return math.isfinite(self.p) and self.p < alpha


def paired_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *,
                method: TestMethod = "signflip", permutations: int = PERMUTATIONS, seed: int = 0) -> PairedTest:
    """Two-sided paired test of ``a (n,)`` against ``b (n,)`` (the same clips in the same order).

    - ``signflip``: statistic |mean(a − b)|; under H0 each difference is as likely positive as negative, so its
      sign is flipped at random. Exact over all 2^n patterns for n ≤ 16, else ``permutations`` seeded draws with
      p = (1 + #{|T*| ≥ |T|}) / (1 + permutations).
    - ``wilcoxon``: :func:`scipy.stats.wilcoxon` (zero differences dropped, exact or normal approximation as
      scipy chooses).

    Identical samples give p = 1; no complete pair gives p = NaN.
    """
    x, y = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
    if x.shape != y.shape:
        raise LmacError(f"a paired test needs two samples of one length, got {x.shape[0]} and {y.shape[0]}")
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    n = int(len(d))
    if n == 0:
        return PairedTest(math.nan, math.nan, 0, method)
    mean_diff = float(d.mean())
    if np.all(d == 0):
        return PairedTest(1.0, 0.0, n, method)
    if method == "wilcoxon":
        from scipy.stats import wilcoxon

        return PairedTest(float(wilcoxon(d, zero_method="wilcox").pvalue), mean_diff, n, method)
    if method != "signflip":
        raise LmacError(f"unknown paired test {method!r}; choose signflip or wilcoxon")
    observed = abs(d.sum())
    tol = 1e-9 * max(1.0, float(np.abs(d).sum()))  # sums of the same numbers in another order
    if n <= EXACT_MAX:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))  # (2^n, n)
        sums = np.abs(signs @ d)
        return PairedTest(float((sums >= observed - tol).mean()), mean_diff, n, method)
    if permutations < 1:
        raise LmacError(f"permutations must be at least 1, got {permutations}")
    rng = np.random.default_rng(seed)
    hits = 0
    chunk = max(1, 2_000_000 // n)
    for s in range(0, permutations, chunk):
        k = min(chunk, permutations - s)
        signs = rng.integers(0, 2, size=(k, n)) * 2.0 - 1.0
        hits += int((np.abs(signs @ d) >= observed - tol).sum())
    return PairedTest((1 + hits) / (1 + permutations), mean_diff, n, method)


def mean_sem(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """``(mean, standard error of the mean)`` of the finite values; NaN where undefined."""
    a = finite(values)
    if not len(a):
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else math.nan


@dataclass(frozen=True)
class StatsConfig:
    """How the tables' intervals and tests are computed (``lmac-zs evaluate --bootstrap/--test``)."""

    resamples: int = RESAMPLES
    level: float = LEVEL
    seed: int = 0
    test: TestMethod = "signflip"
    permutations: int = PERMUTATIONS
    alpha: float = ALPHA

    def __post_init__(self) -> None:
        _check(self.resamples, self.level)
        if self.test not in ("signflip", "wilcoxon"):
            raise LmacError(f"unknown paired test {self.test!r}; choose signflip or wilcoxon")
        if self.permutations < 1:
            raise LmacError(f"permutations must be at least 1, got {self.permutations}")

    def summary(self, values: Sequence[float] | np.ndarray) -> dict:
        """``{"mean", "sem", "lo", "hi", "n"}`` of one table cell (``n``: finite values)."""
        m, e = mean_sem(values)
        lo, hi = bootstrap_ci(values, resamples=self.resamples, level=self.level, seed=self.seed)
        return {"mean": m, "sem": e, "lo": lo, "hi": hi, "n": int(len(finite(values)))}

    def compare(self, a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> PairedTest:
        return paired_test(a, b, method=self.test, permutations=self.permutations, seed=self.seed)

    def describe(self) -> dict:
        return {"bootstrap_resamples": self.resamples, "level": self.level, "seed": self.seed, "test": self.test,
                "permutations": self.permutations, "alpha": self.alpha}
