"""Mode collapse, the computational core (pure functions on numbers and strings).

- next-token entropy from log-probs;
- calibration of the top-1 next-token probability: reliability-diagram bins and the
  expected calibration error (ECE, equal-width bins, weighted by bin size);
- "pick a random number between 0 and 100": a strict parser that tells an answer from an
  echo of the range ("0 to 100") or a numbered list ("1. ..."), and the entropy of the
  answer distribution against the uniform one (at the same sample size too, since a
  plug-in entropy from N samples is biased low).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np


# -- entropy --------------------------------------------------------------------------------
def entropy_from_logprobs(logprobs: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each distribution along the last axis: -sum p log p, with
    ``0 log 0 = 0`` (``-inf`` log-probs contribute nothing). Input must be normalised."""
    lp = np.asarray(logprobs, dtype=np.float64)
    p = np.exp(lp)
    terms = np.where(p > 0, p * np.where(np.isfinite(lp), lp, 0.0), 0.0)
    return -terms.sum(axis=-1)


def per_character(total_nats: float, n_chars: int) -> float:
    """Nats per character: the unit to compare models whose tokenizers differ."""
    if n_chars <= 0:
        raise ValueError("n_chars must be positive")
    return total_nats / n_chars


# -- calibration ------------------------------------------------------------------------------
def top1_confidence(logprobs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 probability, whether the top-1 token is the target) per position."""
    lp = np.asarray(logprobs, dtype=np.float64)
    top = lp.argmax(axis=-1)
    return np.exp(lp.max(axis=-1)), top == np.asarray(targets)


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


# -- random-number answers ------------------------------------------------------------------
@dataclass(frozen=True)
class NumberAnswer:
    kind: str  # "answer" | "range_echo" | "list" | "out_of_range" | "none"
    value: int | None


_LEAD_IN = re.compile(
    r"""^(?:(?:sure|okay|ok|alright)[!,.]?\s+)?
        (?:(?:i\s+(?:pick|choose|chose|picked|will\s+pick|'ll\s+pick|'ll\s+go\s+with)
           |(?:my|the|your)\s+(?:random\s+)?number\s+is
           |(?:random\s+)?number
           |here(?:'s|\s+is)\s+(?:a|one|my)\s+(?:random\s+)?number
           |answer)\s*[:\-]?\s*)?""",
    re.IGNORECASE | re.VERBOSE,
)
_NUMBER = re.compile(r"^([-+]?\d+)")
_WRAP = " \t\"'*`_([{"  # quotes and markdown around an answer
_RANGE_AFTER = re.compile(r"^(?:\s*(?:to|-|–|—|through)\s*|\s+and\s+)[-+]?\d", re.IGNORECASE)
# "1. Pick", "1) Pick", "1, 2, 3", "7\n8": a numbered or enumerated list, not an answer
_LIST_AFTER = re.compile(r"^(?:[.)][ \t]+\S|\)|\s*,\s*[-+]?\d|[ \t]*\n\s*[-+]?\d+\b)")
_NOT_INTEGER = re.compile(r"^(?:\.\d|[A-Za-z%])")  # "42.5", "1st", "50%", "10am"


def parse_number_answer(text: str, low: int = 0, high: int = 100) -> NumberAnswer:
    """Classify a completion of a "random number between LOW and HIGH" prompt.

    An *answer* is an integer at the start (after whitespace, quotes or markdown, and an
    optional short lead-in such as "My number is"), not followed by more digits, a
    decimal point, a range ("0 to 100", "1-100") or a list marker ("1. ", "1)")."""
    body = text.lstrip(_WRAP + "\n\r")
    lead = _LEAD_IN.match(body)
    rest = body[lead.end():] if lead else body
    rest = rest.lstrip(_WRAP)
    number = _NUMBER.match(rest)
    if not number:
        return NumberAnswer("none", None)
    value = int(number.group(1))
    after = rest[number.end():]
    if _RANGE_AFTER.match(after):
        return NumberAnswer("range_echo", value)
    if _LIST_AFTER.match(after):
        return NumberAnswer("list", value)
    if _NOT_INTEGER.match(after):
        return NumberAnswer("none", None)
    if not low <= value <= high:
        return NumberAnswer("out_of_range", value)
    return NumberAnswer("answer", value)


@dataclass(frozen=True)
class AnswerDistribution:
    counts: dict[int, int]
    n_answers: int
    n_samples: int
    entropy: float  # plug-in entropy of the answers (nats)
    uniform_entropy: float  # log(HIGH - LOW + 1)
    uniform_entropy_at_n: float  # expected plug-in entropy of n uniform answers
    top: list[tuple[int, int]]  # most common (value, count)


def answer_distribution(values: Iterable[int | None], low: int = 0, high: int = 100,
                        n_top: int = 5) -> AnswerDistribution:
    """The distribution of parsed answers (``None`` = not an answer) and its entropy
    against the uniform over LOW..HIGH, both as the limit and at the same sample size."""
    values = list(values)
    answers = [v for v in values if v is not None and low <= v <= high]
    counts = Counter(answers)
    k = high - low + 1
    return AnswerDistribution(
        counts=dict(sorted(counts.items())),
        n_answers=len(answers),
        n_samples=len(values),
        entropy=plugin_entropy(counts.values()),
        uniform_entropy=math.log(k),
        uniform_entropy_at_n=expected_uniform_plugin_entropy(len(answers), k),
        top=sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n_top],
    )


def plugin_entropy(counts: Iterable[int]) -> float:
    """Entropy (nats) of the empirical distribution given by ``counts``."""
    counts = [c for c in counts if c > 0]
    n = sum(counts)
    if n == 0:
        return math.nan
    return -math.fsum(c / n * math.log(c / n) for c in counts)


def expected_uniform_plugin_entropy(n: int, k: int) -> float:
    """E[plug-in entropy] of ``n`` draws from the uniform over ``k`` values (exact).

    By symmetry, ``k * E[-(C/n) log(C/n)]`` with ``C ~ Binomial(n, 1/k)``."""
    if n == 0:
        return math.nan
    if k == 1:
        return 0.0
    p = 1.0 / k
    total = 0.0
    for c in range(1, n + 1):
        log_pmf = (math.lgamma(n + 1) - math.lgamma(c + 1) - math.lgamma(n - c + 1)
                   + c * math.log(p) + (n - c) * math.log1p(-p))
        total += math.exp(log_pmf) * (c / n) * math.log(c / n)
    return -k * total
