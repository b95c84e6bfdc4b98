"""Statistics for the reports: intervals that stay inside their quantity's range.

Every interval here is one of four kinds, named in :attr:`Interval.kind` and in the table cells:

* ``exact``: every value is the same (bytes of a fixed-size message, rounds run). Nothing varies
  by seed, so there is nothing to test: the value is reported without an interval.
* ``range``: fewer than :data:`MIN_SEEDS` values. A Student-t interval from two values has a
  factor of 12.7 and runs far outside any bounded range (a Rouge-L of 28.9 [-60.9, 118.7] %), so
  with two seeds the tables print the two values' range and say n = 2; it is a description, not
  a confidence interval.
* ``t`` / ``log t`` / ``logit t``: with at least three values, a 95% Student-t interval of the
  mean on the scale where the quantity is unbounded, transformed back: log for positive
  quantities (losses, seconds, bytes, rounds), logit for bounded ones (Rouge-L in [0, 1] or
  [0, 100] %), none for differences. The back-transformed interval cannot leave the range, and
  for a ratio of positive costs the log scale is the natural one (a geometric-mean ratio whose
  interval is always > 0). Where a value sits on the boundary (a Rouge-L of exactly 0) the
  transform is undefined; the interval is then the t interval on the original scale, clipped to
  the range (kind ``t, clipped``).
* ``bootstrap``: where per-example scores exist (all_examples.csv; ``example`` pairs the rows of
  every run one to one), a seeded percentile bootstrap over eval examples and, with at least
  :data:`MIN_SEEDS` seeds, over seeds as well (:data:`RESAMPLES` resamples, generator seeded with
  :data:`BOOTSTRAP_SEED`, so the same data give the same interval). A resampled mean of bounded
  scores is itself in range, so no transform is needed, and it counts both sources of variation
  that a final Rouge-L has: which examples were drawn and which seed trained the model.

Why both, rather than the bootstrap everywhere: figures and claims are built from all_runs.csv,
which holds one number per run and round; a bootstrap over three seeds has only ten distinct
resamples and an interval no wider than the data, so seed-level intervals use the transformed t.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

LEVEL = 0.95
MIN_SEEDS = 3  # fewer values than this: their range, not an interval
RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Domain:
    """The range a quantity lives in; ``transform`` names the scale on which it is unbounded."""

    name: str
    low: float
    high: float

    @property
    def transform(self) -> str:
        if math.isinf(self.low) and math.isinf(self.high):
            return ""
        return "log" if math.isinf(self.high) else "logit"

    def clip(self, value: float) -> float:
        return float(min(max(value, self.low), self.high))


REAL = Domain("real", -math.inf, math.inf)
POSITIVE = Domain("positive", 0.0, math.inf)  # losses, seconds, bytes, rounds
FRACTION = Domain("fraction", 0.0, 1.0)  # Rouge-L as stored, lost-update fractions
PERCENT = Domain("percent", 0.0, 100.0)  # Rouge-L as shown
PERCENT_DIFF = Domain("percent difference", -100.0, 100.0)  # Ferret − baseline Rouge-L, points


@dataclass(frozen=True)
class Interval:
    """A centre of n values with its interval and the kind of that interval (module docstring).

    ``std`` is the sample std of the values (nan for n < 2); ``low``/``high`` are nan where there
    is no interval (n < 2)."""

    mean: float
    std: float
    n: int
    low: float
    high: float
    level: float = LEVEL
    kind: str = "t"

    def scaled(self, factor: float) -> Interval:
        return Interval(self.mean * factor, self.std * factor, self.n, self.low * factor, self.high * factor,
                        self.level, self.kind)


def _clean(values: Sequence[float]) -> np.ndarray:
    return np.asarray([float(v) for v in values if not math.isnan(float(v))], dtype=float)


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Student-t interval of the mean of ``values`` (NaNs dropped) on their own scale; no width
    below two values. The building block of :func:`summary`, which the reports call."""
    x = _clean(values)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, 0, math.nan, math.nan, level, "none")
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, 1, math.nan, math.nan, level, "single")
    std = float(x.std(ddof=1))
    half = float(_st.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return Interval(mean, std, n, mean - half, mean + half, level, "t")


def _forward(x: np.ndarray, domain: Domain) -> np.ndarray:
    if domain.transform == "log":
        return np.log(x - domain.low)
    u = (x - domain.low) / (domain.high - domain.low)
    return np.log(u / (1 - u))


def _back(y: float, domain: Domain) -> float:
    if domain.transform == "log":
        return domain.low + math.exp(y)
    return domain.low + (domain.high - domain.low) / (1 + math.exp(-y)) if y > -700 else domain.low


def summary(values: Sequence[float], domain: Domain = REAL, level: float = LEVEL) -> Interval:
    """Mean of ``values`` (one per seed, NaNs dropped) with the interval its count and range allow:
    exact, range (n < MIN_SEEDS), or the t interval on the domain's unbounded scale (module
    docstring). ``low`` and ``high`` always lie within ``domain``."""
    x = _clean(values)
    if len(x) and ((x < domain.low).any() or (x > domain.high).any()):
        raise ValueError(f"summary: values {x.min()}..{x.max()} outside the {domain.name} range "
                         f"[{domain.low}, {domain.high}]")
    base = t_interval(x, level)
    if base.n < 2:
        return base
    if np.ptp(x) == 0:
        return Interval(base.mean, 0.0, base.n, base.mean, base.mean, level, "exact")
    if base.n < MIN_SEEDS:
        return Interval(base.mean, base.std, base.n, float(x.min()), float(x.max()), level, "range")
    if not domain.transform:
        return base
    inside = (x > domain.low).all() and (x < domain.high).all()
    if not inside:
        return Interval(base.mean, base.std, base.n, domain.clip(base.low), domain.clip(base.high), level,
                        "t, clipped")
    on = t_interval(_forward(x, domain), level)
    return Interval(base.mean, base.std, base.n, _back(on.low, domain), _back(on.high, domain), level,
                    f"{domain.transform} t")


def log_ratio(base: Sequence[float], ours: Sequence[float], level: float = LEVEL) -> Interval:
    """base / ours of paired positive values (one pair per seed) on the log scale: the geometric
    mean of the ratios, and :func:`summary` of the log ratios transformed back (so low > 0), exact
    where every pair has the same ratio, the range of the ratios with fewer than MIN_SEEDS pairs."""
    b, o = np.asarray(base, dtype=float), np.asarray(ours, dtype=float)
    if b.shape != o.shape:
        raise ValueError(f"log_ratio: {b.shape} vs {o.shape} values; pairs must match one to one")
    keep = ~(np.isnan(b) | np.isnan(o))
    b, o = b[keep], o[keep]
    if ((b <= 0) | (o <= 0)).any():
        raise ValueError(f"log_ratio: non-positive cost among {b.tolist()} / {o.tolist()}; a ratio of "
                         "costs needs positive values")
    d = np.log(b) - np.log(o)
    if len(d) >= 2 and np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(d).max())):
        d = np.full_like(d, d[0])  # the same ratio in every seed, up to the last bit of the division
    on = summary(d, REAL, level)
    if on.kind in ("exact", "single"):  # the ratio itself, not exp(log(ratio)) one ulp away
        ratio = float(b[0] / o[0])
        return Interval(ratio, on.std, on.n, ratio if on.n > 1 else math.nan, ratio if on.n > 1 else math.nan,
                        level, on.kind)

    def exp(v: float) -> float:
        return math.exp(v) if not math.isnan(v) else math.nan

    kind = {"t": "log t"}.get(on.kind, on.kind)
    return Interval(exp(on.mean), on.std, on.n, exp(on.low), exp(on.high), level, kind)


def _counts(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """How often each of n items is drawn in each of ``size`` resamples with replacement."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(float)


def bootstrap_mean(scores: np.ndarray, level: float = LEVEL, resamples: int = RESAMPLES,
                   seed: int = BOOTSTRAP_SEED) -> Interval:
    """Mean of a seeds × examples matrix with a percentile bootstrap interval over examples and,
    with at least MIN_SEEDS seeds (rows), over seeds too. The resampled means are means of the
    data, so the interval stays within the data's own range."""
    x = np.asarray(scores, dtype=float)
    if x.ndim != 2 or np.isnan(x).any() or x.size == 0:
        raise ValueError(f"bootstrap_mean: needs a complete seeds × examples matrix, got shape {x.shape}")
    s, e = x.shape
    rng = np.random.default_rng(seed)
    seeds = _counts(rng, s, resamples) if s >= MIN_SEEDS else np.ones((resamples, s))
    examples = _counts(rng, e, resamples)
    means = ((seeds @ x) * examples).sum(1) / (s * e)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    std = float(x.mean(1).std(ddof=1)) if s > 1 else math.nan
    return Interval(float(x.mean()), std, s, float(low), float(high), level, "bootstrap")


@dataclass(frozen=True)
class Paired:
    """Mean of a − b over the examples (and seeds) with its bootstrap interval and two-sided
    bootstrap p-value; n examples, ``seeds`` resampled or not (fewer than MIN_SEEDS: averaged)."""

    diff: float
    low: float
    high: float
    p: float
    n: int
    level: float = LEVEL
    seeds_resampled: bool = False

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (a bootstrap test at 1 − level)."""
        return bool(self.low > 0 or self.high < 0)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, same_seeds: bool = False, level: float = LEVEL,
                     resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Paired:
    """Difference of the means of two seeds × examples matrices on the same examples (columns pair
    one to one). The examples are resampled jointly (the pairing); the seeds of each side are
    resampled when both have at least MIN_SEEDS, jointly when ``same_seeds`` (row s of both is
    seed s, which shares client sampling and data order), otherwise averaged per example."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"paired_bootstrap: {x.shape} vs {y.shape} scores; pairs must match one to one "
                         "(seeds × the same examples)")
    if np.isnan(x).any() or np.isnan(y).any() or x.size == 0 or y.size == 0:
        raise ValueError("paired_bootstrap: missing scores; every seed needs every example")
    (sa, e), sb = x.shape, y.shape[0]
    rng = np.random.default_rng(seed)
    resample_seeds = sa >= MIN_SEEDS and sb >= MIN_SEEDS
    if resample_seeds:
        ca = _counts(rng, sa, resamples)
        cb = ca if same_seeds and sa == sb else _counts(rng, sb, resamples)
    else:
        ca, cb = np.ones((resamples, sa)), np.ones((resamples, sb))
    examples = _counts(rng, e, resamples)
    per_example = (ca @ x) / sa - (cb @ y) / sb  # resamples × examples
    diffs = (per_example * examples).sum(1) / e
    diff = float(x.mean() - y.mean())
    low, high = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    if np.ptp(diffs) == 0:
        p = 1.0 if diff == 0 else 0.0
    else:
        p = float(min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())))
    return Paired(diff, float(low), float(high), p, e, level, resample_seeds)


def format_interval(iv: Interval, show: Callable[[float], str], centre: bool = True) -> str:
    """A table cell: the centre (unless ``centre`` is False) and what the kind of interval allows,
    always with n: "x [a, b] (n = 3)", "x, range [a, b] (n = 2)", "x (exact, n = 2)", "x (n = 1)"."""
    if iv.n == 0 or math.isnan(iv.mean):
        return "–"
    head = show(iv.mean) if centre else ""
    if iv.kind == "single":
        return f"{head} (n = 1)".strip() if centre else "– (n = 1)"
    if iv.kind == "exact":
        return f"{head} (exact, n = {iv.n})".strip()
    if iv.kind == "range":
        return (f"{head}, " if centre else "") + f"range [{show(iv.low)}, {show(iv.high)}] (n = {iv.n})"
    body = f"[{show(iv.low)}, {show(iv.high)}]"
    return f"{head} {body} (n = {iv.n})" if centre else f"{body} ({iv.kind}, n = {iv.n})"
