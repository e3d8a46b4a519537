"""Statistics of timing samples: pure functions from raw per-call samples to numbers.

Everything here takes values and returns values (numpy and scipy, no torch, no I/O), so the
timing engine, the analysis and the tests share one definition of "the median and its
confidence interval".

Why the median and an order-statistic interval: timing samples are right-skewed (interrupts,
frequency changes, page faults only ever make a call slower), so mean ± t·s describes a
distribution the data do not have. The median is robust to those outliers and its confidence
interval can be had without assuming any distribution (see `median_ci_ranks`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats as _sp

#: Selecting one of m·n pairwise differences in `ratio_ci`: bisect on the value until at most
#: this many pairs remain in the bracket, then sort those. 200 halvings of any finite float
#: range leave a bracket that only ties can populate.
_WINDOW_PAIRS = 4096
_SELECT_STEPS = 200


@dataclass(frozen=True)
class SampleStats:
    """Summary of one set of per-call samples, all in milliseconds.

    ``ci_low_ms``/``ci_high_ms`` bound the median at level ``confidence`` (distribution-free,
    see `median_ci_ranks`); both are NaN when there are too few samples for that level
    (fewer than 6 at 95%). ``std_ms`` is the sample standard deviation (ddof=1; 0 for one
    sample). ``iqr_ms`` is the 75th minus the 25th percentile, linearly interpolated (numpy's
    default, as in ``torch.utils.benchmark``).
    """

    n_samples: int
    median_ms: float
    iqr_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    ci_low_ms: float
    ci_high_ms: float
    confidence: float

    @property
    def ci_rel_halfwidth(self) -> float:
        """Larger distance from the median to a CI bound, relative to the median (NaN if none)."""
        return rel_halfwidth(self.median_ms, self.ci_low_ms, self.ci_high_ms)


@dataclass(frozen=True)
class RatioCI:
    """A ratio of two timings ``a / b`` (unitless) with its confidence interval.

    ``ratio`` is the Hodges-Lehmann estimate: the median over all pairs of ``a_i / b_j``.
    ``ci_low``/``ci_high`` are NaN when the samples are too small for the level.
    """

    ratio: float
    ci_low: float
    ci_high: float
    confidence: float


def _as_samples(samples: Sequence[float], name: str = "samples") -> np.ndarray:
    values = np.asarray(samples, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D sequence, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name}: every sample must be finite")
    return values


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a value in (0, 1), got {confidence!r}")


@lru_cache(maxsize=4096)
def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """0-based indices ``(lo, hi)`` into the sorted samples that bound the median.

    Order-statistic (binomial) method, exact and distribution-free for continuous data: the
    number B of the n samples that fall below the true median is Binomial(n, 1/2) whatever the
    distribution, so the interval ``[x_(l), x_(n+1-l)]`` (1-based order statistics) covers the
    median with probability ``1 - 2 P(B <= l-1)``. We take the largest ``l`` whose coverage is
    still at least ``confidence``; the achieved coverage is therefore >= the one asked for
    (e.g. n=10 at 95% gives ``x_(2), x_(9)`` with 97.9%). Returns None when even
    ``[min, max]`` falls short (n < 6 at 95%).
    """
    _check_confidence(confidence)
    if n < 1:
        raise ValueError(f"n: expected at least one sample, got {n}")
    tail = (1.0 - confidence) / 2.0
    q = int(_sp.binom.ppf(tail, n, 0.5))  # smallest q with P(B <= q) >= tail
    if _sp.binom.cdf(q, n, 0.5) > tail:
        q -= 1  # largest q with P(B <= q) <= tail; this q is l-1
    if q < 0:
        return None
    return q, n - 1 - q


def median_ci(samples: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median (NaNs when n is too small)."""
    values = np.sort(_as_samples(samples))
    ranks = median_ci_ranks(values.size, confidence)
    if ranks is None:
        return math.nan, math.nan
    return float(values[ranks[0]]), float(values[ranks[1]])


def rel_halfwidth(median: float, low: float, high: float) -> float:
    """``max(median - low, high - median) / median``: how far the CI reaches, relatively."""
    if math.isnan(low) or math.isnan(high) or median <= 0.0:
        return math.nan
    return max(median - low, high - median) / median


def summarize(samples_ms: Sequence[float], confidence: float = 0.95) -> SampleStats:
    """Median, IQR, mean, std, min, max and the median's CI of per-call samples in ms."""
    values = _as_samples(samples_ms, "samples_ms")
    q25, median, q75 = np.percentile(values, [25.0, 50.0, 75.0])
    low, high = median_ci(values, confidence)
    return SampleStats(
        n_samples=int(values.size),
        median_ms=float(median),
        iqr_ms=float(q75 - q25),
        mean_ms=float(values.mean()),
        std_ms=float(values.std(ddof=1)) if values.size > 1 else 0.0,
        min_ms=float(values.min()),
        max_ms=float(values.max()),
        ci_low_ms=low,
        ci_high_ms=high,
        confidence=confidence,
    )


def mannwhitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value: do samples ``a`` and ``b`` come from one distribution?

    Rank-based, so it makes no normality assumption and is insensitive to the outliers timing
    data carry. scipy picks the exact distribution for small samples without ties and the
    normal approximation (with tie correction) otherwise. Identical samples give 1.0.
    """
    x, y = _as_samples(a, "a"), _as_samples(b, "b")
    return float(_sp.mannwhitneyu(x, y, alternative="two-sided").pvalue)


def stratified_rank_p(
    a: Sequence[float],
    b: Sequence[float],
    strata_a: Sequence[int],
    strata_b: Sequence[int],
) -> float:
    """Two-sided p of van Elteren's stratified rank-sum test: Mann–Whitney within each
    stratum (here: the round of interleaved measurement both samples were taken in),
    combined with weights 1 / (n + 1). A slowdown that hit both functions in some rounds
    shifts no within-round ranks, so drift between rounds cannot fake a difference. Strata
    with samples of only one side are left out; NaN when none is left. Normal approximation
    with the tie correction."""
    x, y = _as_samples(a, "a"), _as_samples(b, "b")
    sx, sy = np.asarray(strata_a), np.asarray(strata_b)
    if len(sx) != len(x) or len(sy) != len(y):
        raise ValueError("strata: one stratum per sample")
    common = np.intersect1d(sx, sy)
    if not len(common):
        return math.nan
    total, variance = 0.0, 0.0
    for stratum in common:
        xs, ys = x[sx == stratum], y[sy == stratum]
        n1, n2 = len(xs), len(ys)
        n = n1 + n2
        pooled = np.concatenate([xs, ys])
        ranks = _sp.rankdata(pooled)
        _, ties = np.unique(pooled, return_counts=True)
        tie_term = float(np.sum(ties**3 - ties)) / (n * (n - 1)) if n > 1 else 0.0
        w = 1.0 / (n + 1)
        total += w * (ranks[:n1].sum() - n1 * (n + 1) / 2.0)
        variance += w * w * n1 * n2 / 12.0 * ((n + 1) - tie_term)
    if variance <= 0:  # every value tied within every stratum
        return 1.0
    z = total / math.sqrt(variance)
    return float(2.0 * _sp.norm.sf(abs(z)))


def geometric_mean(values: Sequence[float]) -> float:
    """Geometric mean of positive values: the average to use for speedups and other ratios."""
    x = _as_samples(values, "values")
    if np.any(x <= 0.0):
        raise ValueError("values: the geometric mean needs every value > 0")
    return float(np.exp(np.mean(np.log(x))))


def _kth_difference(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """k-th smallest (1-based) of all ``x_i - y_j`` for sorted x, y, without forming all m·n.

    Bisects on the value: the pairs with ``x_i - y_j <= t`` are, for each i, the j from
    ``searchsorted(y, x_i - t)`` on, so one searchsorted counts them. Once the bracket
    ``(lo, hi]`` holds at most `_WINDOW_PAIRS` pairs (or cannot be split further, which means
    its pairs are ties) they are listed and the answer read off. Memory O(m + n + window).
    """
    m, n = x.size, y.size
    lo, hi = -math.inf, math.inf
    j_lo, j_hi = np.full(m, n), np.zeros(m, dtype=np.intp)  # first j counted at lo / at hi
    below = 0  # pairs <= lo; invariant: below < k <= pairs <= hi
    span = (float(x[0] - y[-1]), float(x[-1] - y[0]))  # finite stand-ins for the infinite ends
    for _ in range(_SELECT_STEPS):
        if int(np.sum(j_lo - j_hi)) <= _WINDOW_PAIRS:
            break
        mid = (max(lo, span[0]) + min(hi, span[1])) / 2.0
        if not lo < mid < hi:
            break
        j_mid = np.searchsorted(y, x - mid, side="left")
        count = int(np.sum(n - j_mid))
        if count >= k:
            hi, j_hi = mid, j_mid
        else:
            lo, j_lo, below = mid, j_mid, count
    per_row = j_lo - j_hi
    total = int(np.sum(per_row))
    if total > _WINDOW_PAIRS:  # an unsplittable bracket: all its pairs are one tied value
        i = int(np.flatnonzero(per_row)[0])
        return float(x[i] - y[j_hi[i]])
    rows = np.repeat(np.arange(m), per_row)
    starts = np.cumsum(per_row) - per_row
    cols = np.repeat(j_hi, per_row) + np.arange(total) - np.repeat(starts, per_row)
    window = np.sort(x[rows] - y[cols])
    return float(window[k - below - 1])


def ratio_ci(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> RatioCI:
    """Ratio ``a / b`` of two timing sample sets with a bootstrap-free confidence interval.

    Works on log times, where "a is r times b" is a shift by ``log r``. The estimate is the
    Hodges-Lehmann shift (median of all pairwise ``log a_i - log b_j``) and the interval is the
    Moses interval that inverts the Mann-Whitney test: the k-th smallest and k-th largest
    pairwise difference, with ``k = floor(mn/2 - z·sqrt(mn(m+n+1)/12))`` from the normal
    approximation to U (no tie correction; rounding down makes it slightly conservative).
    Distribution-free under the assumption that the two distributions differ by a scale
    factor. Exponentiated back, so ``ratio > 1`` means ``a`` is slower.
    """
    _check_confidence(confidence)
    xa, xb = _as_samples(a, "a"), _as_samples(b, "b")
    if np.any(xa <= 0.0) or np.any(xb <= 0.0):
        raise ValueError("a, b: a ratio of timings needs every sample > 0")
    x, y = np.sort(np.log(xa)), np.sort(np.log(xb))
    m, n = x.size, y.size
    pairs = m * n
    if pairs % 2:
        shift = _kth_difference(x, y, (pairs + 1) // 2)
    else:
        shift = (_kth_difference(x, y, pairs // 2) + _kth_difference(x, y, pairs // 2 + 1)) / 2
    z = float(_sp.norm.ppf(1.0 - (1.0 - confidence) / 2.0))
    k = math.floor(pairs / 2.0 - z * math.sqrt(pairs * (m + n + 1) / 12.0))
    if k < 1:
        low = high = math.nan
    else:
        low = math.exp(_kth_difference(x, y, k))
        high = math.exp(_kth_difference(x, y, pairs + 1 - k))
    return RatioCI(ratio=math.exp(shift), ci_low=low, ci_high=high, confidence=confidence)
