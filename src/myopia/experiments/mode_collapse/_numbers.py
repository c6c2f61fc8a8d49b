"""Answers to "pick a random number between LOW and HIGH" (pure functions on strings and counts):
a strict parser that tells an answer from an echo of the range ("0 to 100") or a numbered list
("1. ..."), and the entropy of the answers against the uniform's, also at the same sample size
(a plug-in entropy from n samples is biased low)."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable


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


def number_records(texts: list[str], low: int, high: int, key: dict) -> list[dict]:
    """One record per sampled completion: its text, its kind and its parsed value."""
    rows = []
    for i, t in enumerate(texts):
        a = parse_number_answer(t, low, high)
        rows.append({**key, "index": i, "text": t, "kind": a.kind, "value": a.value})
    return rows
