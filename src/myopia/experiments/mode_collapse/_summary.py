"""Mode-collapse headline figures (the ``summary.json`` schema), from the stored tables alone.

Entropies are in nats. The models' tokenizers differ, so only the per-character and per-byte
figures compare models; the per-token ones are there for completeness.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Literal

from pydantic import BaseModel, Field

from ...models import Boundary
from ...stats import expected_calibration_error
from .._base import Headline, TableRow, Tables
from ._numbers import answer_distribution
from ._spec import ModeCollapseSpec


class TextFigures(BaseModel):
    """Next-token statistics over one text for one model: totals over the text divided by its
    tokens, characters or bytes."""

    model: str
    text: str = Field(description='the text\'s name: "shakespeare:PLAY", "prose" or a path')
    tokens: int = Field(description="predicted tokens (every token of the text)")
    chars: int
    bytes: int = Field(description="UTF-8 bytes")
    entropy_per_token: float = Field(description="next-token entropy, nats per token")
    entropy_per_char: float = Field(description="next-token entropy, nats per character")
    entropy_per_byte: float = Field(description="next-token entropy, nats per byte")
    xent_per_token: float = Field(description="cross-entropy of the text, nats per token")
    xent_per_char: float = Field(description="cross-entropy of the text, nats per character")
    bits_per_byte: float = Field(description="cross-entropy of the text, bits per byte")
    top1_accuracy: float = Field(description="share of tokens that were the most probable token")
    mean_confidence: float = Field(description="mean top-1 probability")
    ece: float = Field(description="expected calibration error of the top-1 probability (spec.bins equal-width bins)")


class ChoiceFigures(BaseModel):
    """The multiple-choice set for one model; option probabilities renormalised over the letters."""

    model: str
    questions: int
    accuracy: float = Field(description="share of questions whose most probable letter is right")
    mean_confidence: float = Field(description="mean renormalised probability of the picked letter")
    ece: float = Field(description="expected calibration error of that probability over the questions")
    mean_option_mass: float = Field(description="mean unnormalised probability mass on the letters")


class NumberFigures(BaseModel):
    """Sampled answers to one random-number prompt (or all prompts pooled) for one model."""

    model: str
    prompt: int | Literal["all"] = Field(description='the prompt\'s index in spec.number_prompts, or "all" pooled')
    samples: int
    answers: int = Field(description="samples parsed as an answer in range")
    entropy: float | None = Field(description="plug-in entropy of the answers, nats (None: no answers)")
    uniform_entropy: float = Field(description="log(number_high - number_low + 1)")
    uniform_entropy_at_n: float | None = Field(
        description="expected plug-in entropy of as many uniform answers (None: no answers)")
    top: list[tuple[int, int]] = Field(description="the most common answers, [value, count]")
    kinds: dict[str, int] = Field(description="samples per kind: answer, range_echo, list, out_of_range, none")


class PartStatus(BaseModel):
    """A cell whose part was refused, and why."""

    model: str
    cell: str
    part: Literal["text", "mc", "numbers"]
    status: str


class ModeCollapseRow(TableRow):
    """One model and text; the multiple-choice and number columns are on the model's first row."""

    model: str
    text: str | None
    entropy_per_char: float | None = Field(title="H/char")
    ece: float | None = Field(title="ECE")
    mc_accuracy: float | None = Field(title="MC acc.")
    mc_ece: float | None = Field(title="MC ECE")
    number_answers: str | None = Field(title="numbers: answers")
    number_entropy: float | None = Field(title="H(numbers)")
    uniform_entropy_at_n: float | None = Field(title="H(uniform) at n")
    top_answers: str | None = Field(title="top answers")


class ModeCollapseSummary(Headline):
    """Base vs tuned on the same inputs: next-token entropy and calibration on texts, multiple
    choice, random-number answers; and the parts a model refused."""

    boundary: Boundary = Field(description='the rule that cut the option letters into scored tokens: "natural", '
                               '"lm-eval" or "exact"')
    text: list[TextFigures]
    mc: list[ChoiceFigures]
    numbers: list[NumberFigures] = Field(description='per model and prompt, then "all" pooled when several')
    status: list[PartStatus] = Field(description="refused parts (empty when every part ran)")

    def models(self) -> list[str]:
        return list(dict.fromkeys([r.model for r in self.text] + [r.model for r in self.mc]
                                  + [r.model for r in self.numbers]))

    def pooled_numbers(self, model: str) -> NumberFigures | None:
        """The model's pooled number figures, or those of its only prompt."""
        rows = [r for r in self.numbers if r.model == model]
        return next((r for r in rows if r.prompt == "all"), rows[0] if rows else None)

    def rows(self) -> list[ModeCollapseRow]:
        out = []
        for m in self.models():
            texts: list[TextFigures | None] = [r for r in self.text if r.model == m] or [None]
            for i, t in enumerate(texts):
                # the multiple-choice and number columns on the model's first row only
                mc = next((r for r in self.mc if r.model == m), None) if i == 0 else None
                nb = self.pooled_numbers(m) if i == 0 else None
                out.append(ModeCollapseRow(
                    model=m,
                    text=None if t is None else t.text,
                    entropy_per_char=None if t is None else t.entropy_per_char,
                    ece=None if t is None else t.ece,
                    mc_accuracy=None if mc is None else mc.accuracy,
                    mc_ece=None if mc is None else mc.ece,
                    number_answers=None if nb is None else f"{nb.answers}/{nb.samples}",
                    number_entropy=None if nb is None else nb.entropy,
                    uniform_entropy_at_n=None if nb is None else nb.uniform_entropy_at_n,
                    top_answers=None if nb is None else ", ".join(f"{v}×{c}" for v, c in nb.top[:3]),
                ))
        return out


# -- from the tables ------------------------------------------------------------------------------
def models_in(tables: Tables) -> list[str]:
    """The models of the run, in cell order."""
    return list(dict.fromkeys(r["model"] for r in tables.get("status", [])))


def summarize(tables: Tables, spec: ModeCollapseSpec) -> ModeCollapseSummary:
    tokens: dict[tuple[str, str], list[dict]] = {}
    for r in tables.get("tokens", []):
        tokens.setdefault((r["model"], r["text"]), []).append(r)
    text = [_text(tokens[(i["model"], i["text"])], i, spec.bins) for i in tables.get("texts", [])
            if tokens.get((i["model"], i["text"]))]
    mc = [_choice(m, rows, spec.bins) for m in models_in(tables)
          if (rows := [r for r in tables.get("mc", []) if r["model"] == m])]
    numbers = []
    for m in models_in(tables):
        rows = [r for r in tables.get("numbers", []) if r["model"] == m]
        prompts = sorted({r["prompt_index"] for r in rows})
        numbers += [_numbers(m, p, [r for r in rows if r["prompt_index"] == p], spec) for p in prompts]
        if len(prompts) > 1:
            numbers.append(_numbers(m, "all", rows, spec))
    status = [PartStatus(**r) for r in tables.get("status", []) if r["status"] != "ok"]
    return ModeCollapseSummary(boundary=spec.boundary, text=text, mc=mc, numbers=numbers, status=status)


def _text(tokens: list[dict], info: dict, bins: int) -> TextFigures:
    H = math.fsum(r["entropy"] for r in tokens)
    nll = -math.fsum(r["logprob"] for r in tokens)
    n, c, b = len(tokens), info["chars"], info["bytes"]
    return TextFigures(model=info["model"], text=info["text"], tokens=n, chars=c, bytes=b,
                       entropy_per_token=H / n, entropy_per_char=H / c, entropy_per_byte=H / b,
                       xent_per_token=nll / n, xent_per_char=nll / c, bits_per_byte=nll / b / math.log(2),
                       top1_accuracy=sum(r["correct"] for r in tokens) / n,
                       mean_confidence=math.fsum(r["top1"] for r in tokens) / n,
                       ece=expected_calibration_error([r["top1"] for r in tokens], [r["correct"] for r in tokens],
                                                      bins))


def _choice(model: str, rows: list[dict], bins: int) -> ChoiceFigures:
    n = len(rows)
    return ChoiceFigures(model=model, questions=n, accuracy=sum(r["correct"] for r in rows) / n,
                         mean_confidence=math.fsum(r["confidence"] for r in rows) / n,
                         ece=expected_calibration_error([r["confidence"] for r in rows], [r["correct"] for r in rows],
                                                        bins),
                         mean_option_mass=math.fsum(r["mass"] for r in rows) / n)


def _numbers(model: str, prompt: int | str, rows: list[dict], spec: ModeCollapseSpec) -> NumberFigures:
    values = [r["value"] if r["kind"] == "answer" else None for r in rows]
    d = answer_distribution(values, spec.number_low, spec.number_high)
    return NumberFigures(model=model, prompt=prompt, samples=d.n_samples, answers=d.n_answers,
                         entropy=_nan_none(d.entropy), uniform_entropy=d.uniform_entropy,
                         uniform_entropy_at_n=_nan_none(d.uniform_entropy_at_n), top=d.top,
                         kinds=dict(Counter(r["kind"] for r in rows)))


def _nan_none(x: float) -> float | None:
    """NaN (no answers) as None; -0.0 from a one-answer plug-in entropy as 0.0."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else max(0.0, x)
