"""Confidence intervals (myopia.stats) against independent references: the Wilson interval as the
inverted score test, Student-t quantiles against the integrated density."""

from __future__ import annotations

import math
import statistics

import pytest

from myopia.stats import t_interval, t_quantile, wilson_interval


def _wilson_by_inversion(k: int, n: int, z: float) -> tuple[float, float]:
    """The Wilson interval is {p : |k/n - p| <= z sqrt(p(1-p)/n)}: find its ends by bisection."""
    phat = k / n

    def inside(p: float) -> bool:
        return abs(phat - p) <= z * math.sqrt(p * (1 - p) / n)

    def edge(lo: float, hi: float) -> float:  # lo inside, hi outside (or the reverse)
        for _ in range(200):
            mid = (lo + hi) / 2
            if inside(mid) == inside(lo):
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    low = 0.0 if k == 0 else edge(phat, 0.0)
    high = 1.0 if k == n else edge(phat, 1.0)
    return low, high


@pytest.mark.parametrize("k, n", [(0, 10), (1, 10), (5, 10), (37, 200), (199, 200), (10, 10)])
def test_wilson_interval_matches_the_inverted_score_test(k, n):
    assert wilson_interval(k, n) == pytest.approx(_wilson_by_inversion(k, n, 1.96), abs=1e-9)


def test_wilson_known_value():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)


def _t_cdf(x: float, df: int, steps: int = 200_000) -> float:
    """P(T <= x) by the trapezoid rule on Student's t density from 0 to x (plus 1/2)."""
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    h = x / steps
    ys = [c * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2) for i in range(steps + 1)]
    return 0.5 + h * (sum(ys) - (ys[0] + ys[-1]) / 2)


@pytest.mark.parametrize("df", [1, 2, 4, 9, 30, 45, 120])
def test_t_quantiles_against_integrated_density(df):
    assert _t_cdf(t_quantile(df), df, steps=20_000 if df > 1 else 400_000) == pytest.approx(0.975, abs=2e-4)


def test_t_interval_formula():
    xs = [0.8, 0.83, 0.86, 0.81]
    got = t_interval(xs)
    half = 3.182 * statistics.stdev(xs) / 2
    assert got["mean"] == pytest.approx(statistics.mean(xs))
    assert got["ci_low"] == pytest.approx(statistics.mean(xs) - half) and got["n"] == 4
    assert t_interval([0.5]) == {"mean": 0.5, "ci_low": None, "ci_high": None, "n": 1}




def test_t_interval_clipped_to_bounds():
    xs = [0.85, 0.99, 1.0]  # accuracies near 1: the unclipped upper end is above 1
    plain, share = t_interval(xs), t_interval(xs, bounds=(0.0, 1.0))
    assert plain["ci_high"] > 1 and share["ci_high"] == 1.0
    assert share["ci_low"] == plain["ci_low"] and share["mean"] == plain["mean"]
    assert t_interval([0.0, 0.01, 0.2], bounds=(0.0, 1.0))["ci_low"] == 0.0
