"""Mode-collapse random numbers: the strict parser on the artefacts seen on the bundled models,
the answer distribution, and the uniform entropy baseline against simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from myopia.experiments.mode_collapse._numbers import (
    answer_distribution,
    expected_uniform_plugin_entropy,
    number_records,
    parse_number_answer,
    plugin_entropy,
)


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


def test_number_records_keep_the_key_and_the_parse():
    rows = number_records([" 42", "0 to 100"], 0, 100, {"model": "m", "prompt_index": 1})
    assert rows == [{"model": "m", "prompt_index": 1, "index": 0, "text": " 42", "kind": "answer", "value": 42},
                    {"model": "m", "prompt_index": 1, "index": 1, "text": "0 to 100", "kind": "range_echo", "value": 0}]
