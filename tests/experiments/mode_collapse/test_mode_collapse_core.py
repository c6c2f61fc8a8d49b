"""Mode-collapse core: entropy against torch, ECE against a direct loop, the strict
number parser on the artefacts seen on the bundled models, and the entropy baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from myopia.experiments.mode_collapse._core import (
    answer_distribution,
    entropy_from_logprobs,
    expected_calibration_error,
    expected_uniform_plugin_entropy,
    parse_number_answer,
    plugin_entropy,
    reliability_bins,
    top1_confidence,
)


def test_entropy_matches_torch_categorical():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, 50, generator=gen, dtype=torch.float64) * 3
    logits[0, 0, :10] = -math.inf  # impossible tokens
    lp = torch.log_softmax(logits, dim=-1)
    want = torch.distributions.Categorical(logits=logits).entropy().numpy()
    assert entropy_from_logprobs(lp.numpy()) == pytest.approx(want, abs=1e-10)
    assert entropy_from_logprobs(np.log(np.full(8, 1 / 8))) == pytest.approx(math.log(8))


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


def test_top1_confidence_and_correctness():
    lp = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]))
    conf, ok = top1_confidence(lp, np.array([0, 1]))
    assert conf == pytest.approx([0.7, 0.6]) and list(ok) == [True, False]


@pytest.mark.parametrize("text, kind, value", [
    (" 42", "answer", 42),
    ("42.", "answer", 42),
    ("**73**", "answer", 73),
    ("Sure! My number is 97.", "answer", 97),
    ("Okay, here's a random number: 7", "answer", 7),
    ("1\n\nI picked it because", "answer", 1),
    ("100", "answer", 100),
    ("0 to 100", "range_echo", 0),
    ("0-100", "range_echo", 0),
    ("1 and 100", "range_echo", 1),
    ("1. Pick a number between", "list", 1),
    ("1) First", "list", 1),
    ("1, 2, 3, 4", "list", 1),
    ("7\n8\n9", "list", 7),
    ("101", "out_of_range", 101),
    ("42.5", "none", None),
    ("1st of all", "none", None),
    ("Between 0 and 100, I pick 37", "none", None),
    ("", "none", None),
])
def test_number_parser_tells_answers_from_echoes_and_lists(text, kind, value):
    got = parse_number_answer(text)
    assert (got.kind, got.value) == (kind, value)


def test_uniform_plugin_entropy_baseline_matches_simulation():
    rng = np.random.default_rng(0)
    n, k = 50, 101
    sims = [plugin_entropy(np.bincount(rng.integers(0, k, n), minlength=k)) for _ in range(3000)]
    assert expected_uniform_plugin_entropy(n, k) == pytest.approx(np.mean(sims), abs=0.01)
    assert expected_uniform_plugin_entropy(n, k) < math.log(k) - 0.5  # the bias is large
    assert expected_uniform_plugin_entropy(100000, 3) == pytest.approx(math.log(3), abs=1e-4)


def test_answer_distribution_summary():
    dist = answer_distribution([97, 97, 42, None, 97, 150, 3, 42])
    assert dist.counts == {3: 1, 42: 2, 97: 3} and dist.n_answers == 6 and dist.n_samples == 8
    assert dist.top[:2] == [(97, 3), (42, 2)]
    p = np.array([1, 2, 3]) / 6
    assert dist.entropy == pytest.approx(float(-(p * np.log(p)).sum()))
    assert dist.uniform_entropy == pytest.approx(math.log(101))
    flat = answer_distribution(range(0, 101))
    assert flat.entropy == pytest.approx(math.log(101))
