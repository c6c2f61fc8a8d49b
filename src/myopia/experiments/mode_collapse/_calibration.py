"""Calibration of a top-1 probability (pure functions): reliability-diagram bins and the
expected calibration error (ECE, equal-width bins, weighted by bin size)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


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
