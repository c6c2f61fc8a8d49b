"""How an experiment puts a question to a model, and draws answers.

- framing: tuned models (with a chat template) get the question as a user turn, base models
  get it inside a plain-text ``frame`` such as ``"Q: {prompt}\\nA:"`` (``chat`` mode ``auto``);
  ``always`` / ``never`` force one or the other;
- sampling: many completions in batches of at most :data:`SAMPLE_BATCH` (a white-box backend
  keeps one key/value cache row per sample), each batch seeded from the parameters' seed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from ._base import LanguageModel, Prompt, Sample, SamplingParams

ChatMode = Literal["auto", "always", "never"]
SAMPLE_BATCH = 256


def use_chat(model: LanguageModel, mode: ChatMode) -> bool:
    """Whether ``model`` is prompted through its chat template under ``mode``."""
    if mode == "never":
        return False
    if mode == "always":
        return True
    return model.has_chat_template


def frame_prompt(model: LanguageModel, text: str, mode: ChatMode, frame: str) -> Prompt:
    """``text`` as a chat turn, or inside the plain ``frame`` (which holds ``{prompt}`` once)."""
    if use_chat(model, mode):
        return Prompt(text, chat=True)
    return Prompt(frame.replace("{prompt}", text))


def draw_samples(
    model: LanguageModel, prompt, n: int, params: SamplingParams, batch: int = SAMPLE_BATCH
) -> list[Sample]:
    """``n`` completions drawn in batches of at most ``batch``; batch k is seeded with
    ``params.seed + k``."""
    out: list[Sample] = []
    for k, start in enumerate(range(0, n, batch)):
        out += model.sample(prompt, min(batch, n - start), replace(params, seed=params.seed + k))
    return out


def sample_texts(model: LanguageModel, prompt, n: int, params: SamplingParams, batch: int = SAMPLE_BATCH) -> list[str]:
    """The texts of :func:`draw_samples`."""
    return [s.text for s in draw_samples(model, prompt, n, params, batch)]
