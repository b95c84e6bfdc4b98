"""ferret.report.stats against values computed by hand (textbook formulas, t quantiles typed in)."""

import math

import pytest

from ferret.report.stats import paired_t, t_interval


def test_t_interval_matches_the_textbook_formula():
    values = [1.0, 2.0, 4.0]
    iv = t_interval(values)
    mean = 7 / 3
    std = math.sqrt(((1 - mean) ** 2 + (2 - mean) ** 2 + (4 - mean) ** 2) / 2)
    half = 4.302652729911275 * std / math.sqrt(3)  # t_{0.975, 2}
    assert iv.n == 3 and iv.mean == pytest.approx(mean) and iv.std == pytest.approx(std)
    assert (iv.low, iv.high) == (pytest.approx(mean - half), pytest.approx(mean + half))


def test_t_interval_of_one_value_has_no_width():
    iv = t_interval([0.5, float("nan")])
    assert iv.n == 1 and iv.mean == 0.5 and math.isnan(iv.low) and math.isnan(iv.std)


def test_paired_t_uses_the_differences():
    a, b = [0.5, 0.6, 0.9, 0.4], [0.4, 0.4, 0.6, 0.3]
    d = [x - y for x, y in zip(a, b)]
    mean = sum(d) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 3)
    t = mean / (sd / 2)
    res = paired_t(a, b)
    assert res.diff == pytest.approx(mean)
    half = 3.182446305284263 * sd / 2  # t_{0.975, 3}
    assert res.low == pytest.approx(mean - half) and res.high == pytest.approx(mean + half)
    # two-sided p of t = 3.656 with 3 d.o.f. (t tables: between 0.05 at 3.182 and 0.02 at 4.541)
    assert t == pytest.approx(3.6556307750696546)
    assert res.p == pytest.approx(0.03534, abs=2e-4) and res.significant


def test_paired_t_refuses_unmatched_pairs():
    with pytest.raises(ValueError, match="pairs must match"):
        paired_t([1.0, 2.0], [1.0])
