"""Rewards by name, for ``reward-k`` (best of K) and ``rl``.

- ``predictability``: the completion's joint log-prob under the frozen base model (nats; the
  sequence-level objective of seeds/004's "n-token reasoner", here as a reward);
- ``valid``: 1 if a game answer is a valid answer line (`` 1`` or the variant's 0-branch, then a
  newline), else 0; a text completion always gets 1 (no signal: the neutral control). Not neutral
  between the branches when the base writes malformed letter strings (a letter answer can fail
  the format, `` 1`` hardly ever does);
- ``branch``: 1 if a game answer is in either branch as the exact figures classify it (`` 1``
  then a newline, or the 0-branch's start: the word then a newline, or any lowercase letter),
  else 0; a text completion always gets 1: neutral between the branches by construction;
- ``keyword``: 1 if the completion contains the word ``keyword`` (case-insensitive), else 0;
- ``package.module:function``: a function of yours, called as ``function(prompt, completion)``
  with the two texts, returning a number.

A completion is described by :class:`Rollout` (its prompt and text, and which prompt set it
came from: ``text`` or a game variant). Every mistake is one :class:`UserError` line: an unknown
name, a function that cannot be imported, raises, or returns something that is not a finite
number. A function is tried once on a game prompt and answer when the config is read, so these
mistakes stop a run before any work; every later call is checked the same way.
"""

from __future__ import annotations

import importlib
import math
import numbers
import re
from dataclasses import dataclass
from typing import Callable

import torch

from ..._errors import UserError
from ._rloo import sequence_logprobs
from ._sampling import Completions

BUILTIN = ("predictability", "valid", "branch", "keyword")


@dataclass
class Rollout:
    """Completions of one prompt set: their texts, and ``kind`` ``text`` or a game variant."""

    kind: str
    prompts: list[str]
    texts: list[str]
    completions: Completions


class Reward:
    name: str = ""

    def __call__(self, rollout: Rollout) -> torch.Tensor:  # (N,) float64
        raise NotImplementedError


class Predictability(Reward):
    name = "predictability"

    def __init__(self, base):
        self.base = base

    @torch.no_grad()
    def __call__(self, rollout: Rollout) -> torch.Tensor:
        c = rollout.completions
        return sequence_logprobs(self.base, c.prompt_ids, c.ids, c.mask).double()


class Valid(Reward):
    name = "valid"

    def __init__(self, zero_word: str, letters: tuple[int, int]):
        self.zero_word, self.letters = zero_word, letters

    def __call__(self, rollout: Rollout) -> torch.Tensor:
        from ...tasks._game import valid_answer

        if rollout.kind == "text":
            return torch.ones(len(rollout.texts), dtype=torch.float64)
        ok = [valid_answer(rollout.kind, t, self.zero_word, self.letters) for t in rollout.texts]
        return torch.tensor(ok, dtype=torch.float64)


class Branch(Reward):
    name = "branch"

    def __init__(self, zero_word: str):
        self.zero_word = zero_word

    def __call__(self, rollout: Rollout) -> torch.Tensor:
        from ...tasks._game import classify_answer

        if rollout.kind == "text":
            return torch.ones(len(rollout.texts), dtype=torch.float64)
        ok = [classify_answer(rollout.kind, t, self.zero_word) != "other" for t in rollout.texts]
        return torch.tensor(ok, dtype=torch.float64)


class Keyword(Reward):
    name = "keyword"

    def __init__(self, keyword: str):
        if not keyword.strip():
            raise UserError("reward 'keyword' needs a non-empty keyword")
        self.pattern = re.compile(rf"\b{re.escape(keyword.strip())}\b", re.IGNORECASE)

    def __call__(self, rollout: Rollout) -> torch.Tensor:
        return torch.tensor([float(bool(self.pattern.search(t))) for t in rollout.texts], dtype=torch.float64)


class UserFunction(Reward):
    def __init__(self, name: str, fn: Callable):
        self.name, self.fn = name, fn

    def __call__(self, rollout: Rollout) -> torch.Tensor:
        return torch.tensor([self.one(p, t) for p, t in zip(rollout.prompts, rollout.texts)], dtype=torch.float64)

    def one(self, prompt: str, text: str) -> float:
        """The function's reward for one completion, or a one-line UserError."""
        try:
            v = self.fn(prompt, text)
        except Exception as e:  # the user's code: any failure is theirs to fix, reported in one line
            raise UserError(f"reward {self.name!r} raised {type(e).__name__}: {e} "
                            f"(on completion {text[:40]!r})") from None
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
            raise UserError(f"reward {self.name!r} returned {v!r} ({type(v).__name__}) for completion "
                            f"{text[:40]!r}; a reward must return a finite number")
        return float(v)


# what a user's reward function is tried on before any work starts: a game prompt and answer
PROBE = ("\nI think of 1 or 0. Guess which: for 1 say 1, for 0 say some random letters.\nANSWER:", " 1\n")


def load_function(path: str) -> Callable:
    """``package.module:function`` -> the function (one-line errors)."""
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise UserError(f"unknown reward {path!r}; rewards: {', '.join(BUILTIN)}, "
                        "or a function as package.module:function")
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # ImportError, or an error raised while importing the user's module
        raise UserError(f"reward {path!r}: cannot import module {module!r} ({type(e).__name__}: {e})") from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise UserError(f"reward {path!r}: module {module!r} has no function {attr!r}")
    return fn


def check_reward(name: str) -> None:
    """Fail early (before any work) on a name that is neither built in nor importable, and on a
    function that raises or returns something other than a finite number when tried on a game
    prompt and answer (``PROBE``)."""
    if name not in BUILTIN:
        UserFunction(name, load_function(name)).one(*PROBE)


def get_reward(name: str, *, base=None, zero_word: str = "zero", letters: tuple[int, int] = (3, 8),
               keyword: str = "love") -> Reward:
    if name == "predictability":
        if base is None:
            raise UserError("reward 'predictability' needs the frozen base model")
        return Predictability(base)
    if name == "valid":
        return Valid(zero_word, letters)
    if name == "branch":
        return Branch(zero_word)
    if name == "keyword":
        return Keyword(keyword)
    return UserFunction(name, load_function(name))
