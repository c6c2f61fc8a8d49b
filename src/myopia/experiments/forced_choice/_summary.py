"""Forced-choice headline figures (the ``summary.json`` schema), from the stored tables alone."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...answers import OTHER
from ...models import Boundary
from ...report import interval, num, pct
from ...stats import wilson_interval
from .._base import Headline, TableRow, Tables
from ._spec import ForcedChoiceSpec

Method = Literal["exact", "sampled", "pattern"]
METHOD_ORDER: tuple[Method, ...] = ("exact", "sampled", "pattern")
_CLASS_KEY = re.compile(r"^(?:exact|sampled|pattern)_.+$")


class VariantFigures(BaseModel):
    """One model and prompt variant. Besides the fields below, one key per measured class and
    method, ``<method>_<class>`` (``exact_1``, ``sampled_zero``, ``pattern_other``...): the
    probability (0-1) that the answer falls in the class, measured by ``exact`` (teacher-forced
    scoring), ``sampled`` (the same "begins with" event counted in the samples' tokens) or
    ``pattern`` (the strict pattern on the same samples). ``other`` is the rest of the mass. The
    keys follow the spec's class names, so they are extra keys, checked by name and value."""

    model_config = ConfigDict(extra="allow")

    model: str
    variant: str
    chat: bool = Field(description="prompted through the model's chat template (else the plain frame)")
    exact_status: str = Field(description='"ok", "no exact classes", or "refused: <why>"')
    sample_status: str = Field(description='"ok", "samples = 0", or "refused: <why>"')

    @model_validator(mode="after")
    def _class_keys(self) -> "VariantFigures":
        for k, v in (self.model_extra or {}).items():
            if not _CLASS_KEY.match(k) or isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"unexpected entry {k}={v!r}: extra keys are <method>_<class> probabilities")
        return self

    def probability(self, method: Method, name: str) -> float | None:
        """P(class) by one method, None where it was not measured."""
        return (self.model_extra or {}).get(f"{method}_{name}")


class AnswerFigures(BaseModel):
    """The question of seeds/001 for one model and one compare pair [word variant, random
    variant]: is the guess-0 answer rarer when it must be a random string? From the strict
    patterns on the samples; intervals are 95 % Wilson intervals."""

    model: str
    word_variant: str
    random_variant: str
    p0_word: float | None = Field(description="share of samples answering guess 0, word variant")
    p0_word_low: float
    p0_word_high: float
    share0_word: float | None = Field(description="P(guess 0) / P(guess 0 or 1), word variant (None: no valid answer)")
    share0_word_low: float
    share0_word_high: float
    valid_word: int = Field(description="samples that answered guess 0 or guess 1, word variant")
    n_word: int = Field(description="samples, word variant")
    p0_random: float | None = Field(description="share of samples answering guess 0, random variant")
    p0_random_low: float
    p0_random_high: float
    share0_random: float | None
    share0_random_low: float
    share0_random_high: float
    valid_random: int
    n_random: int
    exact_p0_word: float | None = Field(description="exact P(guess-0 classes), word variant (None: not scored)")
    verdict: Literal["drops", "rises", "no clear change"] = Field(
        description="drops / rises: the two p0 intervals do not overlap; else no clear change")

    def line(self) -> str:
        """The question of seeds/001 answered in one line."""
        return (f"{self.model}: P(guess-0 answer) = {self.p0_word:.3f} [{self.p0_word_low:.3f}, "
                f"{self.p0_word_high:.3f}] when '0' is answered with a word ({self.word_variant}) vs "
                f"{self.p0_random:.3f} [{self.p0_random_low:.3f}, {self.p0_random_high:.3f}] when it is a "
                f"random string ({self.random_variant}): {self.verdict.upper()} (95 % Wilson intervals, "
                f"{self.n_word} and {self.n_random} samples; among valid answers the share of '0' is "
                f"{pct(self.share0_word, 0) or 'n/a'} vs {pct(self.share0_random, 0) or 'n/a'}).")


class AnswerRow(TableRow):
    model: str
    pair: str = Field(title="word → random variant")
    p0_word: str = Field(title="P(0) word")
    p0_random: str = Field(title="P(0) random")
    share0_word: str | None = Field(title="share 0 word")
    share0_random: str | None = Field(title="share 0 random")
    verdict: str = Field(title="drop?")


class ExactRow(TableRow):
    """The end-of-run table when nothing was sampled: the exact figures."""

    model: str
    variant: str
    exact_status: str = Field(title="exact status")
    exact_other: float | None = Field(title="P(other) exact")


class ForcedChoiceSummary(Headline):
    """Per model and variant, the class probabilities three ways; per model and compare pair,
    the one-line answer to seeds/001."""

    samples: int = Field(description="sampled completions per model and variant")
    boundary: Boundary = Field(description="the rule that cut the exact classes' continuations into scored "
                               'tokens: "natural", "lm-eval" or "exact"')
    cells: list[VariantFigures]
    answers: list[AnswerFigures]

    def rows(self) -> list[AnswerRow] | list[ExactRow]:
        if self.answers:
            return [AnswerRow(model=a.model, pair=f"{a.word_variant} → {a.random_variant}",
                              p0_word=_ci(a.p0_word, a.p0_word_low, a.p0_word_high),
                              p0_random=_ci(a.p0_random, a.p0_random_low, a.p0_random_high),
                              share0_word=pct(a.share0_word, 0), share0_random=pct(a.share0_random, 0),
                              verdict=a.verdict) for a in self.answers]
        return [ExactRow(model=c.model, variant=c.variant, exact_status=c.exact_status,
                         exact_other=c.probability("exact", OTHER)) for c in self.cells]


def _ci(p: float | None, low: float, high: float) -> str:
    return "n/a" if p is None else f"{num(p)} {interval(low, high)}"


# -- from the tables ------------------------------------------------------------------------------
def class_index(tables: Tables) -> dict[tuple[str, str, str], dict[str, dict]]:
    """(model, variant, method) -> {class: record}."""
    out: dict[tuple[str, str, str], dict[str, dict]] = {}
    for r in tables.get("classes", []):
        out.setdefault((r["model"], r["variant"], r["method"]), {})[r["class"]] = r
    return out


def models_in(tables: Tables) -> list[str]:
    """The models of the run, in cell order."""
    return list(dict.fromkeys(r["model"] for r in tables.get("prompts", [])))


def summarize(tables: Tables, spec: ForcedChoiceSpec) -> ForcedChoiceSummary:
    idx = class_index(tables)
    cells = []
    for p in tables.get("prompts", []):
        model, variant = p["model"], p["variant"]
        probs = {f"{m}_{name}": r["probability"] for m in METHOD_ORDER
                 for name, r in idx.get((model, variant, m), {}).items()}
        cells.append(VariantFigures(model=model, variant=variant, chat=p["chat"], exact_status=p["exact_status"],
                                    sample_status=p["sample_status"], **probs))
    answers = [a for m in models_in(tables) for word, random in spec.compare
               if (a := _compare(idx, m, word, random)) is not None]
    return ForcedChoiceSummary(samples=spec.samples, boundary=spec.boundary, cells=cells, answers=answers)


def _guess_counts(classes: dict[str, dict], guess: str) -> tuple[int, int, int] | None:
    """(count of ``guess``, count of the other guess, n) over a sampled method's classes."""
    if not classes:
        return None
    n = next(iter(classes.values()))["n"]
    mine = sum(r["count"] for r in classes.values() if r["guess"] == guess)
    theirs = sum(r["count"] for r in classes.values() if r["guess"] not in ("", guess))
    return mine, theirs, n


def _compare(idx, model: str, word: str, random: str) -> AnswerFigures | None:
    a = _guess_counts(idx.get((model, word, "pattern"), {}), "0")
    b = _guess_counts(idx.get((model, random, "pattern"), {}), "0")
    if a is None or b is None:
        return None
    out: dict[str, Any] = {"model": model, "word_variant": word, "random_variant": random}
    for tag, (k0, k1, n) in (("word", a), ("random", b)):
        lo, hi = wilson_interval(k0, n)
        slo, shi = wilson_interval(k0, k0 + k1)
        out.update({f"p0_{tag}": k0 / n if n else None, f"p0_{tag}_low": lo, f"p0_{tag}_high": hi,
                    f"share0_{tag}": k0 / (k0 + k1) if k0 + k1 else None,
                    f"share0_{tag}_low": slo, f"share0_{tag}_high": shi, f"valid_{tag}": k0 + k1, f"n_{tag}": n})
    exact = idx.get((model, word, "exact"), {})
    out["exact_p0_word"] = sum(r["probability"] for r in exact.values() if r["guess"] == "0") if exact else None
    if out["p0_random_high"] < out["p0_word_low"]:
        out["verdict"] = "drops"
    elif out["p0_random_low"] > out["p0_word_high"]:
        out["verdict"] = "rises"
    else:
        out["verdict"] = "no clear change"
    return AnswerFigures(**out)
