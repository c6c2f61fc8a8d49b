"""Answer classes (myopia.answers, forced-choice's and the game task's): exact class probabilities
against brute-force enumeration of a toy model's outputs, and Wilson intervals against a numerical
inversion of the score test."""

from __future__ import annotations

import itertools
import math

import pytest

from myopia._errors import UserError
from myopia.answers import (
    ExactClass,
    PatternClass,
    classify_sample,
    exact_class_probabilities,
    joint_logprob,
    sampled_class_probabilities,
    samples_for_half_width,
)
from myopia.stats import wilson_interval

# A toy autoregressive model over six tokens. Like gemma-3, it writes " 1" and " 0" as a
# space token followed by a digit, so the first-token masses of the classes overlap.
VOCAB = (" ", "1", "0", "zero", "x", "<eos>")
DEPTH = 4


def next_probs(prefix: tuple[str, ...]) -> dict[str, float]:
    weights = [math.sin(1.7 * (len(prefix) + 1) * (j + 1) + sum(map(len, prefix))) * 1.5
               for j in range(len(VOCAB))]
    z = math.fsum(math.exp(w) for w in weights)
    return {tok: math.exp(w) / z for tok, w in zip(VOCAB, weights)}


def chain_logprob(tokens: tuple[str, ...]) -> float:
    return joint_logprob([math.log(next_probs(tokens[:i])[t]) for i, t in enumerate(tokens)])


def all_outputs():
    """Every length-DEPTH output with its probability (the brute-force reference)."""
    for seq in itertools.product(VOCAB, repeat=DEPTH):
        yield seq, math.prod(next_probs(seq[:i])[t] for i, t in enumerate(seq))


TOKENIZED = {" 1": (" ", "1"), " 0": (" ", "0"), "zero": ("zero",), "1": ("1",)}
CLASSES = [ExactClass("one", (" 1", "1")), ExactClass("zero", (" 0", "zero"))]


def test_exact_class_probabilities_equal_brute_force_enumeration():
    result = exact_class_probabilities(
        CLASSES, {c: chain_logprob(TOKENIZED[c]) for c in TOKENIZED})
    brute = {"one": 0.0, "zero": 0.0, "other": 0.0}
    for seq, p in all_outputs():
        label = "other"
        for cls in CLASSES:
            if any(seq[:len(TOKENIZED[c])] == TOKENIZED[c] for c in cls.continuations):
                label = cls.name
        brute[label] += p
    assert math.fsum(brute.values()) == pytest.approx(1.0, abs=1e-12)
    for name in brute:
        assert result.probabilities[name] == pytest.approx(brute[name], abs=1e-12)
    # the shortcut "1 - first-token masses" is a different (wrong) number here
    first = next_probs(())
    shortcut = 1.0 - math.fsum(first[t] for t in {TOKENIZED[c][0] for c in TOKENIZED})
    assert abs(shortcut - brute["other"]) > 0.05


def test_overlapping_continuations_are_refused():
    with pytest.raises(UserError, match="' 1' .* and ' 10' .* overlap"):
        exact_class_probabilities([ExactClass("a", (" 1",)), ExactClass("b", (" 10",))],
                                  {" 1": -1.0, " 10": -2.0})
    with pytest.raises(UserError, match="distinct and not 'other'"):
        exact_class_probabilities([ExactClass("other", ("a",))], {"a": -1.0})


def test_inconsistent_scores_are_an_error_not_a_clamp():
    with pytest.raises(ValueError, match="sum to 1.2"):
        exact_class_probabilities([ExactClass("a", ("x",)), ExactClass("b", ("y",))],
                                  {"x": math.log(0.6), "y": math.log(0.6)})


def test_sampled_classes_match_at_the_start_and_count_the_rest_as_other():
    classes = [PatternClass("one", r"1\b"), PatternClass("zero", r"(?i)zero\b")]
    texts = [" 1", "1\n", "Zero!", " zero", "not zero", "10", "qwxz", "1"]
    assert [classify_sample(t, classes) for t in texts] == [
        "one", "one", "zero", "zero", "other", "other", "other", "one"]
    est = {e.name: e for e in sampled_class_probabilities(texts, classes)}
    assert (est["one"].count, est["zero"].count, est["other"].count) == (3, 2, 3)
    assert est["one"].probability == pytest.approx(3 / 8)
    assert (est["one"].low, est["one"].high) == pytest.approx(wilson_interval(3, 8))
    assert est["other"].examples == ("not zero", "10", "qwxz")


def test_samples_needed_for_a_two_point_interval():
    assert samples_for_half_width(0.02) == 2401
