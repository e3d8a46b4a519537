"""convbench.stats: hand-computed values on small arrays, and the CI's coverage guarantee."""

import math
import random

import numpy as np
import pytest
from scipy import stats as sp

from convbench.analysis import stats
from convbench.analysis.stats import (
    geometric_mean,
    mannwhitney_p,
    median_ci,
    median_ci_ranks,
    ratio_ci,
    summarize,
)


def test_summarize_odd_count_by_hand():
    s = summarize([5.0, 1.0, 4.0, 2.0, 3.0])
    assert s.n_samples == 5
    assert s.median_ms == 3.0
    assert s.iqr_ms == 2.0  # 75th = 4, 25th = 2 (linear interpolation)
    assert s.mean_ms == 3.0
    assert s.std_ms == pytest.approx(math.sqrt(2.5))  # ddof=1
    assert (s.min_ms, s.max_ms) == (1.0, 5.0)
    assert math.isnan(s.ci_low_ms) and math.isnan(s.ci_high_ms)  # n=5 < 6: no 95% CI
    assert math.isnan(s.ci_rel_halfwidth)


def test_summarize_even_count_by_hand():
    s = summarize([4.0, 1.0, 3.0, 2.0])
    assert s.median_ms == 2.5
    assert s.iqr_ms == pytest.approx(3.25 - 1.75)


def test_summarize_single_sample():
    s = summarize([7.0])
    assert (s.median_ms, s.iqr_ms, s.std_ms, s.n_samples) == (7.0, 0.0, 0.0, 1)


@pytest.mark.parametrize("bad", [[], [[1.0, 2.0]], [1.0, math.nan], [math.inf]])
def test_summarize_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="samples_ms"):
        summarize(bad)


def test_median_ci_ranks_match_tables():
    # Standard order-statistic table (1-based): n=6 -> (1, 6), n=10 -> (2, 9), n=20 -> (6, 15).
    assert median_ci_ranks(5) is None
    assert median_ci_ranks(6) == (0, 5)
    assert median_ci_ranks(10) == (1, 8)
    assert median_ci_ranks(20) == (5, 14)
    assert median_ci_ranks(10, 0.5) == (3, 6)


def test_median_ci_by_hand():
    samples = [10.0, 3.0, 7.0, 1.0, 9.0, 2.0, 8.0, 4.0, 6.0, 5.0]
    assert median_ci(samples) == (2.0, 9.0)
    s = summarize(samples)
    assert (s.ci_low_ms, s.ci_high_ms) == (2.0, 9.0)
    assert s.ci_rel_halfwidth == pytest.approx((9.0 - 5.5) / 5.5)


@pytest.mark.parametrize("confidence", [0.5, 0.9, 0.95, 0.99])
def test_median_ci_ranks_coverage_is_at_least_confidence_and_tightest(confidence):
    for n in range(1, 300):
        ranks = median_ci_ranks(n, confidence)
        if ranks is None:
            assert 1 - 2 * sp.binom.cdf(0, n, 0.5) < confidence  # even [min, max] falls short
            continue
        lo, hi = ranks
        assert hi == n - 1 - lo
        # P(x_(lo+1) <= median <= x_(hi+1)) = P(lo+1 <= B <= hi), B ~ Binomial(n, 1/2)
        coverage = sp.binom.cdf(hi, n, 0.5) - sp.binom.cdf(lo, n, 0.5)
        assert coverage >= confidence - 1e-12
        if lo + 1 <= hi - 1:
            narrower = sp.binom.cdf(hi - 1, n, 0.5) - sp.binom.cdf(lo + 1, n, 0.5)
            assert narrower < confidence


def test_ci_contains_median_and_narrows_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 200, 2000):
        s = summarize(rng.lognormal(0.0, 0.3, size=n))
        assert s.ci_low_ms <= s.median_ms <= s.ci_high_ms
        widths.append(s.ci_high_ms - s.ci_low_ms)
    assert widths[0] > widths[1] > widths[2]


def test_ci_widens_with_confidence():
    samples = np.random.default_rng(1).normal(10.0, 1.0, size=100)
    low90, high90 = median_ci(samples, 0.90)
    low99, high99 = median_ci(samples, 0.99)
    assert low99 < low90 and high90 < high99


def test_confidence_is_validated():
    with pytest.raises(ValueError, match="confidence"):
        median_ci_ranks(10, 1.0)


def test_mannwhitney_p_by_hand():
    # All 3 of a below all 3 of b: exact two-sided p = 2 / C(6, 3) = 0.1.
    assert mannwhitney_p([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(0.1)
    assert mannwhitney_p([1.0] * 10, [1.0] * 10) == 1.0
    rng = np.random.default_rng(2)
    assert mannwhitney_p(rng.normal(1.0, 0.01, 50), rng.normal(1.1, 0.01, 50)) < 1e-6


def test_geometric_mean_by_hand():
    assert geometric_mean([1.0, 4.0]) == pytest.approx(2.0)
    assert geometric_mean([2.0, 8.0, 4.0]) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="> 0"):
        geometric_mean([1.0, 0.0])


def test_kth_difference_matches_brute_force():
    rng = random.Random(3)
    for _ in range(50):
        m, n = rng.randint(1, 12), rng.randint(1, 12)
        # a coarse grid makes ties between pairwise differences common
        x = np.sort([rng.randint(0, 6) / 4 for _ in range(m)])
        y = np.sort([rng.randint(0, 6) / 4 for _ in range(n)])
        brute = np.sort(np.subtract.outer(x, y).ravel())
        for k in range(1, m * n + 1):
            assert stats._kth_difference(x, y, k) == brute[k - 1]


def test_ratio_ci_matches_pairwise_definition():
    rng = np.random.default_rng(4)
    a = rng.lognormal(0.0, 0.2, size=10)
    b = 2.0 * rng.lognormal(0.0, 0.2, size=10)
    r = ratio_ci(a, b)
    diffs = np.sort(np.subtract.outer(np.log(a), np.log(b)).ravel())
    # m = n = 10: k = floor(50 - 1.95996 * sqrt(100 * 21 / 12)) = floor(24.07) = 24, which is
    # also the exact Mann-Whitney quantile (R: qwilcox(0.025, 10, 10) == 24).
    assert r.ci_low == pytest.approx(math.exp(diffs[23]))
    assert r.ci_high == pytest.approx(math.exp(diffs[100 - 24]))
    assert r.ratio == pytest.approx(math.exp((diffs[49] + diffs[50]) / 2))
    assert r.ci_low < r.ratio < r.ci_high


def test_ratio_ci_of_scaled_copy_is_the_scale():
    a = np.random.default_rng(5).lognormal(0.0, 0.5, size=101)
    r = ratio_ci(a, 2.0 * a)
    assert r.ratio == pytest.approx(0.5)
    assert r.ci_low < 0.5 < r.ci_high


def test_ratio_ci_too_small_and_invalid():
    r = ratio_ci([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert r.ratio == pytest.approx(1.0)
    assert math.isnan(r.ci_low) and math.isnan(r.ci_high)
    with pytest.raises(ValueError, match="> 0"):
        ratio_ci([1.0, -1.0], [1.0])


# --- stratified by rounds -----------------------------------------------------------------


def test_stratified_rank_test_is_not_fooled_by_drift_between_rounds(rounds_data):
    from convbench.analysis.stats import mannwhitney_p, stratified_rank_p

    a, b, ra, rb = rounds_data(shift_b=1.0)
    assert mannwhitney_p(a, b) < 1e-6  # pooled, the drift looks like a difference
    assert stratified_rank_p(a, b, ra, rb) > 0.05  # within rounds there is none
    a, b, ra, rb = rounds_data(shift_b=0.97)  # a real 3% difference
    assert stratified_rank_p(a, b, ra, rb) < 1e-6


def test_stratified_rank_test_edges():
    import math

    from convbench.analysis.stats import stratified_rank_p

    assert math.isnan(stratified_rank_p([1.0], [1.0], [0], [1]))  # no common round
    assert stratified_rank_p([1.0, 1.0], [1.0, 1.0], [0, 0], [0, 0]) == 1.0  # all tied
    with pytest.raises(ValueError, match="strata"):
        stratified_rank_p([1.0, 2.0], [1.0], [0], [0])
