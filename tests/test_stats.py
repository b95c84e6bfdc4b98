"""ferret.report.stats against values computed by hand (textbook formulas, t quantiles typed in),
and on adversarial inputs: intervals never leave their quantity's range."""

import math

import numpy as np
import pytest

from ferret.report.stats import (
    FRACTION,
    PERCENT,
    PERCENT_DIFF,
    POSITIVE,
    REAL,
    bootstrap_mean,
    format_interval,
    log_ratio,
    paired_bootstrap,
    summary,
    t_interval,
)


def test_t_interval_matches_the_textbook_formula():
    values = [1.0, 2.0, 4.0]
    iv = t_interval(values)
    mean = 7 / 3
    std = math.sqrt(((1 - mean) ** 2 + (2 - mean) ** 2 + (4 - mean) ** 2) / 2)
    half = 4.302652729911275 * std / math.sqrt(3)  # t_{0.975, 2}
    assert iv.n == 3 and iv.mean == pytest.approx(mean) and iv.std == pytest.approx(std)
    assert (iv.low, iv.high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert summary(values, REAL) == iv  # an unbounded quantity keeps the plain t interval


def test_t_interval_of_one_value_has_no_width():
    iv = t_interval([0.5, float("nan")])
    assert iv.n == 1 and iv.mean == 0.5 and math.isnan(iv.low) and math.isnan(iv.std)


def test_two_seeds_give_their_range_not_a_t_interval():
    # the case that printed FedAvg's Rouge-L as 28.9 [-60.9, 118.7] %: t_{0.975,1} = 12.7
    iv = summary([0.239, 0.339], FRACTION)
    assert iv.kind == "range" and (iv.low, iv.high) == (0.239, 0.339) and iv.n == 2
    assert t_interval([0.239, 0.339]).low < 0  # what it replaces
    assert format_interval(iv.scaled(100), lambda v: f"{v:.1f}") == "28.9, range [23.9, 33.9] (n = 2)"


def test_log_t_interval_of_a_positive_quantity_by_hand():
    x = [1.5, 1.6, 3.0]
    logs = [math.log(v) for v in x]
    m = sum(logs) / 3
    sd = math.sqrt(sum((v - m) ** 2 for v in logs) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)
    iv = summary(x, POSITIVE)
    assert iv.kind == "log t" and iv.mean == pytest.approx(sum(x) / 3)
    assert (iv.low, iv.high) == (pytest.approx(math.exp(m - half)), pytest.approx(math.exp(m + half)))
    assert t_interval(x).low < 0 < iv.low  # the plain t interval would put an eval loss below zero


@pytest.mark.parametrize("values", [[0.001, 0.002, 0.999], [0.0001, 0.0002, 0.0003], [0.9999, 0.99, 0.5],
                                    [0.01, 0.95, 0.02, 0.97], [0.0, 0.3, 0.35], [1.0, 0.2, 0.9, 0.1]])
def test_bounded_intervals_stay_in_range_on_adversarial_inputs(values):
    for domain, scale in ((FRACTION, 1.0), (PERCENT, 100.0)):
        iv = summary([scale * v for v in values], domain)
        assert domain.low <= iv.low <= iv.high <= domain.high, (values, iv)
    plain = t_interval(values)
    assert plain.low < 0 or plain.high > 1  # adversarial indeed: the plain t interval leaves [0, 1]


def test_values_on_the_boundary_fall_back_to_a_clipped_t_interval():
    iv = summary([0.0, 0.3, 0.35], FRACTION)
    assert iv.kind == "t, clipped" and iv.low == 0.0 and iv.high == pytest.approx(t_interval([0.0, 0.3, 0.35]).high)


def test_a_difference_of_percentages_stays_within_100_points():
    iv = summary([-99.0, 99.0, 98.0], PERCENT_DIFF)
    assert -100 <= iv.low < iv.high <= 100


def test_values_outside_their_range_are_refused():
    with pytest.raises(ValueError, match="outside the fraction range"):
        summary([0.2, 1.2, 0.4], FRACTION)


def test_zero_variance_is_exact_without_an_interval():
    iv = summary([2000.0, 2000.0, 2000.0], POSITIVE)
    assert iv.kind == "exact" and iv.low == iv.high == 2000.0
    assert format_interval(iv, lambda v: f"{v:g}") == "2000 (exact, n = 3)"


def test_log_ratio_is_the_geometric_mean_with_a_positive_interval():
    base, ours = [19.0, 20.0, 40.0], [4.0, 4.2, 2.0]
    d = [math.log(b / o) for b, o in zip(base, ours)]
    m = sum(d) / 3
    sd = math.sqrt(sum((v - m) ** 2 for v in d) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)
    iv = log_ratio(base, ours)
    assert iv.kind == "log t" and iv.mean == pytest.approx(math.exp(m))
    assert (iv.low, iv.high) == (pytest.approx(math.exp(m - half)), pytest.approx(math.exp(m + half)))
    ratios = [b / o for b, o in zip(base, ours)]
    assert t_interval(ratios).low < 0 < iv.low  # the arithmetic t interval of the ratios runs negative


@pytest.mark.parametrize("base,ours", [([1e9, 1.0, 3e5], [1.0, 1e9, 2.0]), ([5e-9, 4e-9, 1e-12], [1.0, 2.0, 3.0])])
def test_log_ratio_intervals_are_positive_on_adversarial_inputs(base, ours):
    iv = log_ratio(base, ours)
    assert 0 < iv.low <= iv.mean <= iv.high


def test_fixed_size_messages_give_the_exact_ratio():
    iv = log_ratio([2e9, 2e9, 2e9], [2000.0, 2000.0, 2000.0])
    assert iv.kind == "exact" and iv.mean == pytest.approx(1e6) and iv.low == iv.high == iv.mean


def test_log_ratio_refuses_non_positive_costs():
    with pytest.raises(ValueError, match="non-positive"):
        log_ratio([1.0, 0.0], [1.0, 1.0])


def test_bootstrap_mean_is_seeded_and_inside_the_data():
    rng = np.random.default_rng(3)
    scores = np.clip(rng.normal(0.02, 0.05, (3, 40)), 0, 1)  # near 0: a t interval would cross it
    a, b = bootstrap_mean(scores), bootstrap_mean(scores)
    assert a == b and a.kind == "bootstrap" and a.n == 3
    assert 0 <= scores.min() <= a.low < a.mean < a.high <= scores.max() <= 1
    assert a.mean == pytest.approx(scores.mean())


def test_bootstrap_over_seeds_widens_with_the_seed_spread():
    rng = np.random.default_rng(4)
    shared = rng.uniform(0.2, 0.6, 60)
    close = np.stack([shared + s for s in (0.0, 0.01, 0.02)])
    apart = np.stack([shared + s for s in (0.0, 0.2, 0.4)])
    assert apart.clip(0, 1).shape == (3, 60)
    w_close = bootstrap_mean(close).high - bootstrap_mean(close).low
    w_apart = bootstrap_mean(apart).high - bootstrap_mean(apart).low
    assert w_apart > 2 * w_close


def test_paired_bootstrap_finds_a_shift_and_no_shift():
    rng = np.random.default_rng(5)
    base = rng.uniform(0.1, 0.7, (3, 80))
    shifted = np.clip(base + 0.1 + rng.normal(0, 0.03, base.shape), 0, 1)
    same = np.clip(base + rng.normal(0, 0.03, base.shape), 0, 1)
    hit, miss = paired_bootstrap(shifted, base, same_seeds=True), paired_bootstrap(same, base, same_seeds=True)
    assert hit.significant and hit.p < 0.05 and hit.low > 0 and hit.seeds_resampled
    assert hit.diff == pytest.approx(shifted.mean() - base.mean())
    assert not miss.significant and miss.p > 0.05 and miss.low < 0 < miss.high


def test_paired_bootstrap_stays_within_the_difference_range():
    ones, zeros = np.ones((2, 30)), np.zeros((2, 30))
    ones[:, 0] = 0.0
    res = paired_bootstrap(ones, zeros)
    assert -1 <= res.low <= res.high <= 1 and not res.seeds_resampled  # two seeds: averaged, not resampled


def test_paired_bootstrap_refuses_unmatched_pairs():
    with pytest.raises(ValueError, match="pairs must match"):
        paired_bootstrap(np.zeros((2, 3)), np.zeros((2, 4)))
