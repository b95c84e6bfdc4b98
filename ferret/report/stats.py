"""Statistics for the reports: t intervals over seeds, paired differences on a shared eval set.

scipy supplies the t quantiles and the paired t-test (the field's implementation, not a copied
table). Every function takes plain sequences, so tests can check them against values computed
independently."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """Mean of n values with their sample std and a two-sided t interval (nan where n < 2)."""

    mean: float
    std: float
    n: int
    low: float
    high: float
    level: float = LEVEL

    @property
    def sem(self) -> float:
        return self.std / math.sqrt(self.n) if self.n >= 2 else math.nan


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Student-t interval of the mean of ``values`` (NaNs dropped)."""
    x = np.asarray([v for v in values if not math.isnan(float(v))], dtype=float)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, 0, math.nan, math.nan, level)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, 1, math.nan, math.nan, level)
    std = float(x.std(ddof=1))
    half = float(_st.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return Interval(mean, std, n, mean - half, mean + half, level)


@dataclass(frozen=True)
class Paired:
    """Mean of a - b over n pairs, its t interval and the two-sided paired t-test p-value."""

    diff: float
    low: float
    high: float
    p: float
    n: int
    level: float = LEVEL

    @property
    def significant(self) -> bool:
        return bool(self.p < 1 - self.level)


def paired_t(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Paired:
    """Paired t-test of a against b (same examples in the same order)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired_t: {x.shape} vs {y.shape} values; pairs must match one to one")
    d = x - y
    iv = t_interval(d, level)
    if iv.n < 2:
        return Paired(iv.mean, math.nan, math.nan, math.nan, iv.n, level)
    p = 1.0 if iv.std == 0 else float(_st.ttest_rel(x, y).pvalue)
    return Paired(iv.mean, iv.low, iv.high, p, iv.n, level)
