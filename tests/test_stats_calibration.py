"""Calibration (myopia.stats, used by mode-collapse and self-training): ECE against a direct loop and
known cases, reliability bins."""

from __future__ import annotations

import numpy as np
import pytest

from myopia.stats import expected_calibration_error, reliability_bins


def _ece_loop(conf, correct, n_bins):
    total, n = 0.0, len(conf)
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        idx = [i for i, c in enumerate(conf) if lo <= c < hi or (b == n_bins - 1 and c == 1.0)]
        if idx:
            acc = sum(correct[i] for i in idx) / len(idx)
            mean = sum(conf[i] for i in idx) / len(idx)
            total += len(idx) / n * abs(acc - mean)
    return total


def test_ece_equals_a_direct_loop_and_known_cases():
    rng = np.random.default_rng(1)
    conf = rng.uniform(size=500)
    correct = rng.uniform(size=500) < conf ** 2  # overconfident
    for n_bins in (1, 10, 15):
        assert expected_calibration_error(conf, correct, n_bins) == pytest.approx(
            _ece_loop(list(conf), list(correct), n_bins), abs=1e-12)
    assert expected_calibration_error([0.9] * 4, [True] * 4) == pytest.approx(0.1)
    assert expected_calibration_error([1.0, 1.0], [False, False]) == pytest.approx(1.0)
    # perfectly calibrated by construction: ECE small, and bins cover every point
    conf = rng.uniform(size=20000)
    correct = rng.uniform(size=20000) < conf
    assert expected_calibration_error(conf, correct) < 0.02
    bins = reliability_bins(conf, correct)
    assert sum(b.count for b in bins) == 20000 and len(bins) == 10
    assert reliability_bins([1.0], [True])[-1].count == 1
