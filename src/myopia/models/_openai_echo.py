"""Prompt log-probs through ``echo``, checked before they are trusted.

``/completions`` with ``echo=true, logprobs=k`` returns, for every prompt token, its
log-prob and the top-k alternatives. Servers disagree on what those numbers mean:
llama.cpp's Python server (llama-cpp-python 0.3.x), for models that add no BOS token,
reports at prompt position ``i`` the log-prob of token ``i`` under the distribution that
*follows* token ``i`` (it predicts token ``i+1``): everything is shifted by one position.

The probe asks the server for a greedy continuation with generation log-probs (which
are right), then echoes the same text and compares:

- ``aligned``: echo ``token_logprobs[i]`` equal the generation log-probs: use them.
- ``shifted``: the generation log-prob of token ``i`` is found in ``top_logprobs[i-1]``
  (the probe's greedy tokens are there). The echo numbers are then not used for scoring:
  ``top_logprobs`` are keyed by token text, and two token ids with the same text overwrite
  each other, so the backend scores by forced generation instead (:mod:`._openai_forced`).
- anything else: scoring is refused with a one-line error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

from .._errors import UserError
from ._base import ScoredContinuation, TokenScore

PROBE_CONTEXT = "One, two, three, four, five, six, seven, eight,"
PROBE_TOKENS = 4
# nats. Both paths run the same weights, but llama.cpp's numbers move by a few hundredths of
# a nat with how a prefix was evaluated (one batch, token by token, or reused from its KV
# cache); the shift errs by whole nats (11-13 on the probe text with SmolLM2).
TOLERANCE = 0.25


@dataclass(frozen=True)
class EchoProbe:
    mode: Literal["aligned", "shifted"]
    aligned_error: float  # max |echo - generation| read as aligned
    shifted_error: float  # max |echo - generation| read as shifted by one
    tokens: tuple[str, ...]  # the probe's generated tokens


def _logprobs(resp: dict[str, Any], name: str, what: str) -> dict[str, Any]:
    choices = resp.get("choices") or [{}]
    lp = choices[0].get("logprobs") if isinstance(choices[0], dict) else None
    if not isinstance(lp, dict) or not lp.get("tokens") or lp.get("token_logprobs") is None:
        raise UserError(f"server for {name} returned no log-probs for {what}; myopia needs a "
                        "server that returns them (llama.cpp server, vLLM, or an API with "
                        "logprobs)")
    return lp


def probe_echo(complete: Callable[..., dict[str, Any]], k: int, name: str) -> EchoProbe:
    """Decide how to read this server's echo log-probs, or raise :class:`UserError`."""
    gen = _logprobs(complete(PROBE_CONTEXT, max_tokens=PROBE_TOKENS, temperature=0,
                             logprobs=k), name, "/completions (logprobs)")
    tokens = [str(t) for t in gen["tokens"]]
    gen_lp = [float(v) for v in gen["token_logprobs"]]
    echo = _logprobs(complete(PROBE_CONTEXT + "".join(tokens), max_tokens=1, temperature=0,
                              echo=True, logprobs=k), name, "/completions (echo=true)")
    start = _first_index_at(echo["text_offset"], echo["tokens"], len(PROBE_CONTEXT))
    stop = start + len(tokens)
    if [str(t) for t in echo["tokens"][start:stop]] != tokens:
        raise UserError(f"server for {name} echoes the probe text as different tokens than "
                        "it generated; its prompt log-probs cannot be checked, so scoring is "
                        "refused")
    aligned = [echo["token_logprobs"][i] for i in range(start, stop)]
    shifted = [_lookup(echo["top_logprobs"], i - 1, echo["tokens"][i])
               for i in range(start, stop)]
    a_err, s_err = _max_error(aligned, gen_lp), _max_error(shifted, gen_lp)
    if a_err <= TOLERANCE:
        mode: Literal["aligned", "shifted"] = "aligned"
    elif s_err <= TOLERANCE:
        mode = "shifted"
    else:
        raise UserError(
            f"server for {name} returns echo prompt log-probs that match neither its own "
            f"generation log-probs (max error {a_err:.3g} nats) nor them shifted by one "
            f"position ({s_err:.3g}); scoring through it is refused")
    return EchoProbe(mode, a_err, s_err, tuple(tokens))


def _first_index_at(offsets: list[int], tokens: list[str], pos: int) -> int:
    """Index of the first token that ends after character ``pos`` (lm-eval's boundary:
    a token straddling the context/continuation boundary belongs to the continuation)."""
    for i, off in enumerate(offsets):
        end = offsets[i + 1] if i + 1 < len(offsets) else off + len(tokens[i])
        if end > pos:
            return i
    return len(offsets)


def _first_index_from(offsets: list[int], pos: int) -> int:
    """Index of the first token that starts at or after character ``pos``."""
    return next((i for i, off in enumerate(offsets) if off >= pos), len(offsets))


def _lookup(tops: list[dict[str, float] | None], i: int, token: str) -> float | None:
    if i < 0 or i >= len(tops) or not tops[i]:
        return None
    value = tops[i].get(token)
    return None if value is None else float(value)


def _max_error(values: list[float | None], reference: list[float]) -> float:
    errors = [math.inf if v is None else abs(float(v) - r) for v, r in zip(values, reference)]
    return max(errors) if errors else math.inf


def rank_in_top(tops: dict[str, float] | None, token: str, value: float) -> int:
    """1-based rank of ``token`` among the server's top-k, or -1 when it is not listed."""
    if not tops or token not in tops:
        return -1
    return 1 + sum(1 for v in tops.values() if v is not None and float(v) > value)


def scored_from_echo(resp: dict[str, Any], context: str, continuation: str,
                     probe: EchoProbe, k: int, name: str) -> ScoredContinuation:
    """Per-token scores of ``continuation`` from an echo response for context+continuation.

    ``token_id`` is -1 (a server gives text, not ids), ``entropy`` is NaN (only the top-k is
    known), ``rank`` is the rank within the top-k, or -1 when the token is outside it.
    """
    lp = _logprobs(resp, name, "/completions (echo=true)")
    offsets, tokens = lp["text_offset"], [str(t) for t in lp["tokens"]]
    end = _first_index_from(offsets, len(context) + len(continuation))
    start = _first_index_at(offsets, tokens, len(context))
    if start >= end:
        raise UserError(f"continuation {continuation!r} produced no tokens on {name}")
    if probe.mode != "aligned":
        raise ValueError("echo log-probs are only read when the probe found them aligned")
    # the natural rule: a token that straddles the boundary is scored, its context part moved
    moved = context[offsets[start]:] if offsets[start] < len(context) else ""
    out = ScoredContinuation(context=context, continuation=continuation, moved=moved)
    for i in range(start, end):
        value, tops = lp["token_logprobs"][i], lp["top_logprobs"][i]
        if value is None:
            raise UserError(f"cannot score {continuation!r} on {name}: the first token of a "
                            "prompt has no log-prob; give a non-empty context")
        value = float(value)
        out.tokens.append(TokenScore(token=tokens[i], token_id=-1, logprob=value,
                                     rank=rank_in_top(tops, tokens[i], value),
                                     entropy=math.nan))
    return out
