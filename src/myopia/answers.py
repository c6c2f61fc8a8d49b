"""Answer-class probabilities, exact and sampled (pure functions), shared by forced-choice and the
lab's ``game`` task (self-training).

A model answers a prompt; its answer falls into *classes* ("1", "zero", "random string").

- An **exact class** is a finite list of continuations. The probability that the model's
  output begins with a continuation is the product of its tokens' conditional
  probabilities (the joint log-prob from teacher-forced scoring, over *all* its tokens:
  gemma-3 writes " 1" as a space token then a digit). Distinct continuations are disjoint
  events when none is a prefix of another, so a class's probability is the exact sum of
  its continuations' probabilities, and ``other = 1 - sum(classes)``: the mass of every
  output that starts with none of the listed continuations. It is **not** one minus the
  first-token masses: a first token (the space before " 1" and " 0") is shared by classes
  and by outputs in none of them.
- A **pattern class** is a regular expression that a sampled completion's start must
  match; its probability is estimated from N samples, with a Wilson score interval.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from ._errors import UserError
from .stats import wilson_interval

OTHER = "other"
SUM_TOLERANCE = 1e-6  # sum of class probabilities may exceed 1 by float error only


@dataclass(frozen=True)
class ExactClass:
    name: str
    continuations: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.continuations or any(not c for c in self.continuations):
            raise UserError(f"answer class {self.name!r} needs at least one non-empty continuation")


@dataclass(frozen=True)
class PatternClass:
    name: str
    pattern: str  # matched at the start of the completion (leading whitespace ignored)

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except re.error as err:
            raise UserError(f"answer class {self.name!r}: bad pattern {self.pattern!r} ({err})") from None


def check_prefix_free(classes: Sequence[ExactClass]) -> None:
    """Raise :class:`UserError` if two listed continuations overlap as events (one is a
    prefix of another, or one is listed twice)."""
    owners = [(c, cls.name) for cls in classes for c in cls.continuations]
    names = [cls.name for cls in classes]
    if len(set(names)) != len(names) or OTHER in names:
        raise UserError(f"answer class names must be distinct and not {OTHER!r}: {names}")
    for i, (a, name_a) in enumerate(owners):
        for b, name_b in owners[i + 1:]:
            if a.startswith(b) or b.startswith(a):
                raise UserError(
                    f"continuations {a!r} ({name_a}) and {b!r} ({name_b}) overlap: one is a "
                    "prefix of the other, so their probabilities would be counted twice; "
                    "keep only the shorter one or end both with a delimiter")


def joint_logprob(token_logprobs: Sequence[float]) -> float:
    """Chain rule: log P(t1..tn | ctx) = sum_i log P(t_i | ctx, t_<i) (exact sum)."""
    return math.fsum(token_logprobs)


def logsumexp(values: Sequence[float]) -> float:
    finite = [v for v in values if v != -math.inf]
    if not finite:
        return -math.inf
    top = max(finite)
    return top + math.log(math.fsum(math.exp(v - top) for v in finite))


@dataclass(frozen=True)
class ExactResult:
    probabilities: dict[str, float]  # class name -> probability, plus "other"
    logprobs: dict[str, float]  # class name -> log-probability (not for "other")


def exact_class_probabilities(classes: Sequence[ExactClass],
                              continuation_logprobs: Mapping[str, float]) -> ExactResult:
    """Class probabilities from each continuation's joint log-prob (natural log).

    ``continuation_logprobs`` maps every listed continuation to its joint log-prob given
    the prompt. Raises ``ValueError`` when the classes add up to more than 1, which no
    consistent model can produce (it would mean the scores are wrong).
    """
    check_prefix_free(classes)
    missing = [c for cls in classes for c in cls.continuations if c not in continuation_logprobs]
    if missing:
        raise ValueError(f"no log-prob given for continuation(s) {missing}")
    logprobs = {cls.name: logsumexp([continuation_logprobs[c] for c in cls.continuations])
                for cls in classes}
    probs = {name: math.exp(lp) for name, lp in logprobs.items()}
    total = math.fsum(probs.values())
    if total > 1 + SUM_TOLERANCE:
        raise ValueError(f"class probabilities sum to {total:.9f} > 1: the continuations' "
                         "scores are inconsistent")
    probs[OTHER] = max(0.0, 1.0 - total)
    return ExactResult(probs, logprobs)


# -- sampled pattern classes -------------------------------------------------------------
def classify_sample(text: str, classes: Sequence[PatternClass]) -> str:
    """The first class whose pattern matches the start of ``text`` (after leading
    whitespace), else ``"other"``."""
    stripped = text.lstrip()
    for cls in classes:
        if re.match(cls.pattern, stripped):
            return cls.name
    return OTHER


@dataclass(frozen=True)
class SampledEstimate:
    name: str
    count: int
    n: int
    probability: float
    low: float
    high: float
    examples: tuple[str, ...]  # a few matching completions, for the report


def sampled_class_probabilities(texts: Sequence[str], classes: Sequence[PatternClass],
                                z: float = 1.96, n_examples: int = 3) -> list[SampledEstimate]:
    """Each class's share of ``texts`` (plus "other") with Wilson intervals."""
    names = [cls.name for cls in classes]
    if len(set(names)) != len(names) or OTHER in names:
        raise UserError(f"answer class names must be distinct and not {OTHER!r}: {names}")
    labels = [classify_sample(t, classes) for t in texts]
    return label_shares(labels, names, texts, z, n_examples)


def label_shares(labels: Sequence[str], names: Sequence[str], texts: Sequence[str] = (), z: float = 1.96,
                 n_examples: int = 3) -> list[SampledEstimate]:
    """Each name's share of ``labels`` (plus "other") with Wilson intervals; ``texts``, aligned
    with ``labels``, give up to ``n_examples`` examples of each."""
    n = len(labels)
    out = []
    for name in [*names, OTHER]:
        hits = [i for i, lab in enumerate(labels) if lab == name]
        lo, hi = wilson_interval(len(hits), n, z)
        examples = tuple(texts[i] for i in hits[:n_examples]) if texts else ()
        out.append(SampledEstimate(name, len(hits), n, len(hits) / n if n else math.nan, lo, hi, examples))
    return out


def samples_for_half_width(half_width: float, p: float = 0.5, z: float = 1.96) -> int:
    """Samples needed for a normal-approximation interval of +-``half_width`` at
    proportion ``p`` (worst case p=0.5): ceil(z^2 p (1-p) / h^2)."""
    if not 0 < half_width < 1:
        raise ValueError("half_width must be in (0, 1)")
    return math.ceil(z * z * p * (1 - p) / (half_width * half_width))
