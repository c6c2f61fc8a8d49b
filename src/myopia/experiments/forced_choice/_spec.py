"""The forced-choice spec: prompt variants, their answer classes, and the default experiment.

The two prompts of ``seeds/001`` are kept verbatim (typo "f you would" included); the
other variants are the controls a careful reader would ask for.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ...answers import OTHER, ExactClass, PatternClass, check_prefix_free
from ...models import Boundary, ChatMode
from .._base import Frame, Spec

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
_INTRO = ("I'd like to try a sort of psychological experiment, if that's alright. I'm thinking "
          "of either the number \"1\" or \"0\"; f you would, please guess which. ")


class AnswerClass(BaseModel):
    """One answer class. ``continuations`` are scored exactly (the output *begins with* one
    of them); ``pattern`` (a regular expression matched at the start of a sampled answer,
    after leading whitespace) is estimated from samples. Give either or both."""

    model_config = ConfigDict(extra="forbid")

    name: str
    continuations: list[str] = Field(default_factory=list)
    pattern: str | None = None
    guess: Literal["1", "0"] | None = Field(None, description="the guess this answer stands for")

    @model_validator(mode="after")
    def _something(self) -> "AnswerClass":
        if not self.continuations and not self.pattern:
            raise ValueError(f"class {self.name!r} needs continuations, a pattern, or both")
        if any(not c for c in self.continuations):
            raise ValueError(f"class {self.name!r} has an empty continuation")
        if self.pattern is not None:
            PatternClass(self.name, self.pattern)  # raises on a bad regex
        return self

    def exact(self) -> ExactClass | None:
        return ExactClass(self.name, tuple(self.continuations)) if self.continuations else None

    def prefix_pattern(self) -> str | None:
        """The exact class's event as a pattern on a sampled answer (starts with a listed
        continuation, leading whitespace ignored like the sampled classifier does)."""
        if not self.continuations:
            return None
        alts = sorted({c.lstrip() for c in self.continuations if c.strip()}, key=len, reverse=True)
        return "(?:" + "|".join(re.escape(a) for a in alts) + ")"


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    text: str
    classes: list[AnswerClass] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not _SAFE.match(v):
            raise ValueError("variant names are 1-40 letters, digits, '-' or '_' (used in folder names)")
        return v

    @model_validator(mode="after")
    def _classes_ok(self) -> "Variant":
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names) or OTHER in names or "status" in names:
            # "status": the summary's exact_status would clash with the class's exact_<name>
            raise ValueError(f"variant {self.name!r}: class names must be distinct and not {OTHER!r} or 'status'")
        check_prefix_free([e for c in self.classes if (e := c.exact()) is not None])
        return self


# -- the default classes -------------------------------------------------------------------
# strict patterns: the answer alone on the first line of the completion (a full stop or "!"
# allowed); '"1" means ...' or "1 is a monkey" are not answers
_ALONE = r'[.!]?[ \t]*(?:\n|$)'

def _digit(name: str, d: str, guess: str | None) -> AnswerClass:
    conts = [d, f" {d}", f'"{d}"', f' "{d}"']
    return AnswerClass(name=name, continuations=conts, pattern=rf'"?{d}"?{_ALONE}', guess=guess)


def _word(name: str, word: str, guess: str | None) -> AnswerClass:
    forms = [word, word.capitalize()]
    conts = [f"{q}{f}" for f in forms for q in ("", " ", '"', ' "')]
    return AnswerClass(name=name, continuations=conts, pattern=rf'(?i)"?{word}"?{_ALONE}', guess=guess)


# A random string: one run of 4+ letters alone on the first line (optionally quoted), not
# a common English reply. Strict on purpose; the report lists what it matched.
_COMMON = "zero|one|sure|okay|hello|guess|answer|thank|thanks|yes|yeah|please|random|string|letters|none|number"
RANDOM_PATTERN = rf'"?(?!(?i:{_COMMON})\b)[A-Za-z]{{4,}}"?{_ALONE}'


def _random(guess: str | None = "0") -> AnswerClass:
    return AnswerClass(name="random", pattern=RANDOM_PATTERN, guess=guess)


def default_variants() -> list[Variant]:
    one, zero_word = _digit("1", "1", "1"), _word("zero", "zero", "0")
    zero_digit = _digit("0", "0", None)  # a "0" where the instructions asked for something else
    tail_zero = 'If your guess is "1", respond with just "1", and if your guess is "0", respond with the word "zero".'
    tail_random = ('If your guess is "1", respond with just "1", and if your guess is "0", respond with a '
                   "string of random letters.")
    return [
        Variant(name="seed-zero", text=_INTRO + tail_zero, classes=[one, zero_word, zero_digit]),
        Variant(name="seed-random", text=_INTRO + tail_random, classes=[one, _random(), zero_digit]),
        Variant(name="swapped-zero", text=_INTRO + 'If your guess is "0", respond with the word "zero", and '
                'if your guess is "1", respond with just "1".', classes=[one, zero_word, zero_digit]),
        Variant(name="swapped-random", text=_INTRO + 'If your guess is "0", respond with a string of random '
                'letters, and if your guess is "1", respond with just "1".', classes=[one, _random(), zero_digit]),
        Variant(name="spelled-one", text=_INTRO + 'If your guess is "1", respond with the word "one", and if '
                'your guess is "0", respond with just "0".',
                classes=[_word("one", "one", "1"), _digit("0", "0", "0"), _digit("1", "1", None)]),
        Variant(name="neutral-word", text=_INTRO + 'If your guess is "1", respond with just "1", and if your '
                'guess is "0", respond with the word "blue".',
                classes=[one, _word("blue", "blue", "0"), zero_digit]),
    ]


class ForcedChoiceSpec(Spec):
    models: list[str] = Field(default_factory=lambda: ["gemma-3-270m", "smollm2-135m-instruct"], min_length=1)
    variants: list[Variant] = Field(default_factory=default_variants, min_length=1)
    only: list[str] = Field(default_factory=list, description="run only these variants (names); empty = all")
    compare: list[list[str]] = Field(
        default_factory=lambda: [["seed-zero", "seed-random"], ["swapped-zero", "swapped-random"],
                                 ["neutral-word", "seed-random"]],
        description="pairs [word variant, random variant]: does P(guess 0) drop from the first to the second?")
    chat: ChatMode = Field(
        "auto", description="auto: chat template for models that have one (tuned), the frame otherwise")
    frame: Frame = Field("Q: {prompt}\nA:", description="plain-text frame for base models; must contain {prompt}")
    samples: int = Field(200, ge=0, le=20000, description="sampled completions per model and variant (0: exact only)")
    max_tokens: int = Field(8, ge=1, le=256)
    temperature: float = Field(1.0, gt=0)
    examples: int = Field(3, ge=0, le=50, description="sample completions shown per class")
    boundary: Boundary = Field(
        "natural", description="how the exact classes' continuations are cut into scored tokens where the "
        'tokenizer merges across the end of the prompt: "natural", "lm-eval" or "exact" (README of the models)')

    @model_validator(mode="after")
    def _names(self) -> "ForcedChoiceSpec":
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be distinct: {names}")
        unknown = [n for n in self.only if n not in names]
        unknown += [n for pair in self.compare for n in pair if n not in names]
        if unknown:
            raise ValueError(f"unknown variant(s) {sorted(set(unknown))}; variants: {names}")
        if any(len(pair) != 2 for pair in self.compare):
            raise ValueError("each compare entry is a pair [word variant, random variant]")
        return self

    def active(self) -> list[Variant]:
        return [v for v in self.variants if not self.only or v.name in self.only]


QUICK = {"only": ["seed-zero", "seed-random"], "samples": 48, "max_tokens": 6}
