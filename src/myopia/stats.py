"""Confidence intervals, one copy each, for every experiment's headline figures.

- :func:`mean`: the mean of the values that are present;
- :func:`t_interval`: mean and 95% Student-t interval over seeds (or any small sample);
- :func:`wilson_interval`: Wilson score interval of a binomial proportion (sampled answers);
- :func:`reliability_bins`, :func:`expected_calibration_error`: calibration of a top-1 probability
  (reliability-diagram bins and the ECE, equal-width bins weighted by bin size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

# two-sided 95% quantiles of Student's t, df = 1..30 (beyond: the normal's 1.96 is within 2%)
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip

T_INTERVAL = "95% t-interval over seeds (mean ± t(n-1)·sd/√n)"


def t_quantile(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError("a t-interval needs at least two values")
    return _T975[df - 1] if df <= len(_T975) else 1.96 + 2.4 / df  # 2.4/df: close to the exact tail


def mean(values: list[float | None]) -> float | None:
    """The mean of the finite values that are not None; None when there are none."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    return sum(xs) / len(xs) if xs else None


def t_interval(values: list[float], bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """Mean and 95% t-interval: mean ± t(n-1) · sd / √n (no interval for n = 1); None and
    non-finite values are left out; ``bounds``: the ends clipped to the values' range (a share:
    ``(0, 1)``). Returns ``{"mean", "ci_low", "ci_high", "n"}``."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    n, m = len(xs), mean(xs)
    if n <= 1:
        return {"mean": m, "ci_low": None, "ci_high": None, "n": n}
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    low, high = m - half, m + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return {"mean": m, "ci_low": low, "ci_high": high, "n": n}


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (``z=1.96``: 95 %)."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


# --- calibration of a top-1 probability ------------------------------------------------------
@dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    count: int
    confidence: float  # mean confidence in the bin (NaN when empty)
    accuracy: float  # fraction correct in the bin (NaN when empty)


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool],
                     n_bins: int = 10) -> list[CalibrationBin]:
    """Equal-width bins over [0, 1]; bin b holds confidences in [b/n, (b+1)/n), the last
    bin also holds 1.0."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if conf.shape != ok.shape:
        raise ValueError("confidence and correct must have the same length")
    if conf.size and (conf.min() < 0 or conf.max() > 1):
        raise ValueError("confidences must lie in [0, 1]")
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    index = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    bins = []
    for b in range(n_bins):
        mask = index == b
        n = int(mask.sum())
        bins.append(CalibrationBin(b / n_bins, (b + 1) / n_bins, n,
                                   float(conf[mask].mean()) if n else math.nan,
                                   float(ok[mask].mean()) if n else math.nan))
    return bins


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool],
                               n_bins: int = 10) -> float:
    """ECE = sum over bins of (bin size / N) * |accuracy - mean confidence|."""
    bins = reliability_bins(confidence, correct, n_bins)
    total = sum(b.count for b in bins)
    if total == 0:
        return math.nan
    return math.fsum(b.count / total * abs(b.accuracy - b.confidence) for b in bins if b.count)
