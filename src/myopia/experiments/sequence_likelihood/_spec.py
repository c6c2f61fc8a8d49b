"""The sequence-likelihood spec: prompts, continuation length, how many samples and beams."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from .._base import Spec

SEED_STORY = (
    " little girl who was born with a very special gift. She could see things that others"
    " could not. She could see the future, and she could see the past"
)


class SequenceLikelihoodSpec(Spec):
    models: list[str] = Field(default_factory=lambda: ["gemma-3-270m", "smollm2-135m-instruct"], min_length=1)
    prompts: list[str] = Field(
        default_factory=lambda: [
            "Once upon a time, there was a",
            "The meaning of life is",
            "My favourite thing about the city is",
            "def fibonacci(n):",
        ],
        min_length=1,
    )
    length: int = Field(32, ge=1, le=512, description="tokens per continuation")
    samples: int = Field(64, ge=1, le=4096, description="sampled continuations per model and prompt")
    temperature: float = Field(1.0, gt=0, description="sampling temperature")
    beam_width: int = Field(4, ge=1, le=64, description="beams kept by beam search (the top-K sequences)")
    continuations: list[str] = Field(default_factory=lambda: [SEED_STORY], description="listed continuations, "
                                     "cut to `length` tokens (default: the seed's davinci-002 story)")
    degenerate: list[str] = Field(default_factory=lambda: [" a"], description="units repeated to `length` tokens")
    chat: bool = Field(False, description="prompt models with a chat template through it")
    boundary: Literal["natural", "lm-eval"] = Field(
        "natural", description="how listed and degenerate continuations are cut into tokens where the tokenizer "
        'merges across the end of the prompt: "natural" or "lm-eval" ("exact" sums over every tokenization of a '
        "text, so it has no fixed token length)")

    @field_validator("prompts", "continuations", "degenerate")
    @classmethod
    def _no_empty(cls, v: list[str]) -> list[str]:
        if any(not s for s in v):
            raise ValueError("empty strings are not accepted")
        return v


QUICK = {"samples": 32, "prompts": ["Once upon a time, there was a", "The meaning of life is"]}
