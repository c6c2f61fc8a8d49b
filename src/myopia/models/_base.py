"""The model interface every backend implements.

A :class:`LanguageModel` is what experiments talk to. White-box backends (``hf:``,
``gguf:``, bundled names, ``lab:``) implement everything; black-box backends
(``openai:``) declare fewer :class:`Capabilities`, and experiments that need more
refuse them with a clear error (:meth:`LanguageModel.require`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence, get_args

from .._errors import UserError
from ._boundary import Cut


@dataclass(frozen=True)
class Prompt:
    """A context for a model. ``chat=True`` renders it with the model's chat template
    (as a single user turn, followed by the assistant's generation prompt)."""

    text: str
    chat: bool = False
    system: str | None = None  # only with chat=True; None keeps the template's default


Context = str | Prompt

# How a (context, continuation) pair is cut into the tokens that are scored; see
# LanguageModel.score and the README's "Scoring at the token boundary".
Boundary = Literal["natural", "lm-eval", "exact"]
BOUNDARIES: tuple[str, ...] = get_args(Boundary)


def check_boundary(boundary: str) -> str:
    """``boundary`` itself, or a :class:`UserError` naming the accepted rules."""
    if boundary not in BOUNDARIES:
        accepted = ", ".join(f'"{b}"' for b in BOUNDARIES)
        raise UserError(f"unknown boundary {boundary!r}; accepted: {accepted}")
    return boundary


@dataclass(frozen=True)
class Capabilities:
    score: bool = True  # exact teacher-forced log-probs of a given continuation
    next_token: bool = True  # the full next-token distribution
    sample: bool = True
    white_box: bool = True  # hidden states, attention patterns, gradients


@dataclass
class TokenScore:
    token: str  # the token's text
    token_id: int
    logprob: float
    rank: int  # 1 = the most probable token
    entropy: float  # nats, of the distribution the token was drawn from


@dataclass
class ScoredContinuation:
    """A scored continuation, and how the boundary rule cut the pair into tokens.

    ``tokens`` are the scored tokens; they spell ``moved + continuation`` unless ``dropped``
    or ``repeated`` say otherwise (lm-eval only). With ``boundary="exact"``, ``logprob`` is
    the sum over every tokenization (``exact_logprob``) and ``tokens`` show the natural
    tokenization for inspection.
    """

    context: str  # the rendered context (after any chat template)
    continuation: str
    tokens: list[TokenScore] = field(default_factory=list)
    boundary: str = "natural"  # the rule (BOUNDARIES), or "ids" for token ids given by the caller
    moved: str = ""  # end of the context scored as part of the continuation
    dropped: str = ""  # lm-eval: characters of context + continuation the model never sees
    repeated: str = ""  # lm-eval: end of the context the model sees a second time
    backed_up: str = ""  # exact: end of the context re-spelled by the summed token sequences
    sequences: int = 0  # exact: how many token sequences the sum runs over
    exact_logprob: float | None = None  # exact: log P(continuation | context) as a string
    exact_bound: float = 0.0  # exact: |true value - exact_logprob| <= this (nats; mass left out)

    @property
    def logprob(self) -> float:
        """Joint log-prob of the continuation given the context (nats)."""
        if self.exact_logprob is not None:
            return self.exact_logprob
        return math.fsum(t.logprob for t in self.tokens)

    @property
    def mean_logprob(self) -> float:
        return self.logprob / max(len(self.tokens), 1)

    def to_dict(self) -> dict:
        return {
            "context": self.context,
            "continuation": self.continuation,
            "logprob": self.logprob,
            "mean_logprob": self.mean_logprob,
            "boundary": self.boundary,
            "moved": self.moved,
            "dropped": self.dropped,
            "repeated": self.repeated,
            "backed_up": self.backed_up,
            "sequences": self.sequences,
            "exact_bound": self.exact_bound,
            "tokens": [t.__dict__ for t in self.tokens],
        }


@dataclass
class Sample:
    context: str
    text: str
    token_ids: list[int]


@dataclass(frozen=True)
class SamplingParams:
    """How to draw continuations. ``temperature=0`` is greedy decoding."""

    max_tokens: int = 32
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0
    min_tokens: int = 0  # end-of-sequence is forbidden before this many tokens

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise UserError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise UserError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"top_k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UserError(f"top_p must be in (0, 1], got {self.top_p}")


class LanguageModel:
    """Base class: one model behind one interface.

    Subclasses set ``name`` and ``capabilities`` and implement what they can.
    Contexts are plain strings or :class:`Prompt` objects (``chat=True`` for tuned models).
    """

    name: str = "model"
    capabilities: Capabilities = Capabilities()

    # -- what experiments call -------------------------------------------------
    def score(self, context: Context, continuations: Sequence[str],
              boundary: str = "natural") -> list[ScoredContinuation]:
        """Exact teacher-forced per-token log-probs of each continuation after ``context``.

        ``boundary`` says which tokens are scored where the tokenizer merges across the
        boundary (one of :data:`BOUNDARIES`):

        - ``"natural"``: the continuation's tokens in the model's own tokenization of
          context + continuation; a token that straddles the boundary is scored, and the
          context characters it covers are ``moved``;
        - ``"lm-eval"``: lm-evaluation-harness's rule (trailing whitespace moves to the
          continuation, the pair is tokenized jointly), with its dropped characters said;
        - ``"exact"``: the string-level P(continuation | context), summed over every
          tokenization (white-box backends only).
        """
        raise NotImplementedError

    def score_many(self, requests: Sequence[tuple[Context, str]],
                   boundary: str = "natural") -> list[ScoredContinuation]:
        """Score (context, continuation) pairs with different contexts, batched."""
        check_boundary(boundary)
        out: list[ScoredContinuation] = []
        for ctx, cont in requests:
            out.extend(self.score(ctx, [cont], boundary=boundary))
        return out

    def next_token_logprobs(self, contexts: Sequence[Context]):
        """Log-probs of the next token after each context: a (len(contexts), vocab) tensor."""
        raise NotImplementedError

    def sample(self, context: Context, n: int, params: SamplingParams) -> list[Sample]:
        """``n`` continuations of ``context`` drawn with ``params`` (reproducible by seed)."""
        raise NotImplementedError

    def render(self, context: Context) -> str:
        """The exact text the model sees for ``context`` (chat template applied)."""
        if isinstance(context, Prompt):
            if context.chat:
                raise UserError(f"model {self.name} has no chat template; use chat=false")
            return context.text
        return context

    @property
    def has_chat_template(self) -> bool:
        return False

    def white_box(self, experiment: str = "this experiment") -> "WhiteBoxModel":
        """This model as a :class:`WhiteBoxModel`, or one line naming ``experiment`` and what
        would be accepted when the backend is black-box."""
        if not isinstance(self, WhiteBoxModel):
            self.require("white_box", experiment=experiment)
            raise UserError(f"{experiment} needs white-box access, which model {self.name} does not offer")
        return self

    def require(self, *needs: str, experiment: str = "this experiment") -> None:
        """Raise a clear error if this model lacks a capability an experiment needs."""
        missing = [n for n in needs if not getattr(self.capabilities, n)]
        if missing:
            raise UserError(
                f"{experiment} needs {', '.join(missing)} access, which model {self.name} "
                "does not offer (black-box backend); use a white-box model "
                "(hf:, gguf:, lab: or a bundled name)"
            )

    def sample_with_drafts(self, context: Context, n: int, params: SamplingParams, draft: int) -> list[Sample]:
        """Like :meth:`sample`, decoded with drafts: a ``lab:`` model trained with ``mtp:N`` or
        ``mtp-seq:N`` drafts ``draft`` tokens with its extra heads and one forward pass verifies
        them (self-speculative decoding). Greedy (temperature 0) gives the tokens of :meth:`sample`;
        sampling draws from the same distribution; only the number of forward passes changes.
        A model without such heads, or a black-box backend, is refused with one line."""
        raise UserError(
            f"decoding with drafts needs a lab: model with multi-token heads; {self.name} is a black-box server"
        )

    def close(self) -> None:
        """Release resources (server connections, memory)."""


class WhiteBoxModel(LanguageModel):
    """A model whose insides experiments may read: the torch module (hidden states, attention
    patterns, gradients), its tokenizer, and scoring at the level of token ids.

    Get one with :meth:`LanguageModel.white_box`, which refuses a black-box backend with one line.
    """

    model: Any  # the transformers causal LM (a torch.nn.Module)
    tokenizer: Any  # its transformers tokenizer
    device: Any  # the torch.device the model sits on
    prefix_token_id: int | None  # what stands in for an empty context (BOS, else EOS)

    def encode_context(self, context: Context) -> tuple[str, list[int]]:
        """The rendered text and token ids of a context (BOS added where the model wants it)."""
        raise NotImplementedError

    def continuation_ids(self, context: Context, text: str) -> list[int]:
        """Token ids of ``text`` as it would follow ``context``, aligned with :meth:`encode_context`."""
        raise NotImplementedError

    def score_ids(self, context: Context, continuations: Sequence[Sequence[int]]) -> list[ScoredContinuation]:
        """Score continuations given as token ids, exactly as drawn (no text round trip)."""
        raise NotImplementedError

    def cut(self, context: Context, text: str, boundary: str = "natural") -> Cut:
        """The token ids the rule ``boundary`` (``natural`` or ``lm-eval``) gives a (context,
        continuation) pair: what the model conditions on, what is scored, and the characters
        that moved, were dropped or repeated (what :meth:`score` scores, as ids)."""
        raise NotImplementedError

    def score_cuts(self, context: Context, cuts: Sequence[Cut]) -> list[ScoredContinuation]:
        """Score cuts of ``context`` made by :meth:`cut`, whose ``cont_ids`` may be shortened."""
        raise NotImplementedError

    def beam_search(self, context: Context, width: int, length: int) -> list[Sample]:
        """The ``width`` best continuations of exactly ``length`` tokens by beam search."""
        raise NotImplementedError
