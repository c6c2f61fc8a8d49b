"""Exact scoring on llama.cpp's server despite its shifted echo log-probs: forced generation.

Generation log-probs on llama.cpp are right and keyed by token id (they are read from the
raw logits; ``logit_bias`` only changes which token the sampler picks). So the log-prob of
continuation token ``t_j`` is the generation log-prob of a one-token greedy completion of
the joint prefix ``t_<j`` with ``logit_bias = {t_j: +100}``, one request per token. Token
ids come from the server's ``/extras/tokenize``; every prefix is checked to re-tokenize
to exactly the joint tokens before it is sent, so no token is scored in a context the
model would not see. (The echo ``top_logprobs`` are keyed by token *text*, and two ids
with the same text overwrite each other: reading the shifted value back from them is
not exact, and is never done.)

After a chat prompt the rendered prompt is the server's secret, so only a reply's *first*
token can be forced (``/chat/completions`` with the same ``logit_bias``): a continuation
is scored there only when it is one token on its own (:func:`chat_jobs`); longer ones are
refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from .._errors import UserError
from ._base import ScoredContinuation, TokenScore
from ._openai_echo import rank_in_top

FORCE_BIAS = 100.0


@dataclass(frozen=True)
class ForcedJob:
    """One token to score: the text of its prefix and its id."""

    index: int  # which continuation
    prefix: str
    token_id: int
    token_text: str
    moved: str = ""  # the end of the context the continuation's first token covers


class TokenizerEndpoints:
    """``/extras/tokenize`` and ``/extras/detokenize`` of a llama.cpp (Python) server."""

    def __init__(self, post: Callable[[str, dict[str, Any]], dict[str, Any]], model: str,
                 name: str, why: str = "shifts its echo log-probs by one position and"):
        self._post, self._model, self._name, self._why = post, model, name, why

    def tokenize(self, text: str) -> list[int]:
        try:
            resp = self._post("/extras/tokenize", {"model": self._model, "input": text})
        except UserError as err:
            raise UserError(f"server for {self._name} {self._why} cannot force tokens without "
                            f"/extras/tokenize, so exact scoring through it is refused ({err})"
                            ) from None
        tokens = resp.get("tokens")
        if not isinstance(tokens, list):
            raise UserError(f"server for {self._name} has no usable /extras/tokenize; exact "
                            "scoring through it is refused")
        return [int(t) for t in tokens]

    def detokenize(self, ids: list[int]) -> str:
        resp = self._post("/extras/detokenize", {"model": self._model, "tokens": ids})
        return str(resp.get("text", ""))


def plan_jobs(tok: TokenizerEndpoints, index: int, context: str, continuation: str,
              name: str) -> list[ForcedJob]:
    """The forced-generation requests that score ``continuation`` after ``context``."""
    ctx_ids = tok.tokenize(context)
    all_ids = tok.tokenize(context + continuation)
    start = _common_prefix(ctx_ids, all_ids)
    moved = ""
    if start < len(ctx_ids):
        # the natural rule: joint tokens that still end inside the context belong to it; the
        # first that does not straddles the boundary and is scored
        while start + 1 < len(all_ids):
            head = tok.detokenize(all_ids[: start + 1])
            if len(head) > len(context) or not context.startswith(head):
                break
            start += 1
        moved = context[len(tok.detokenize(all_ids[:start])) if start else 0:]
    if start == 0:
        raise UserError(f"cannot score {continuation!r} on {name}: the context must keep at "
                        "least one token of its own")
    if start >= len(all_ids):
        raise UserError(f"continuation {continuation!r} produced no tokens on {name}")
    prefixes = [context if start == len(ctx_ids) else tok.detokenize(all_ids[:start])]
    for j in range(start + 1, len(all_ids) + 1):
        prefixes.append(tok.detokenize(all_ids[:j]))
    jobs = []
    for k, j in enumerate(range(start, len(all_ids))):
        prefix = prefixes[k]
        if k > 0 or start != len(ctx_ids):
            if tok.tokenize(prefix) != all_ids[:j]:
                raise UserError(
                    f"cannot score {continuation!r} on {name}: the text before its token {k} "
                    "re-tokenizes differently, so that token cannot be forced in its context")
        nxt = prefixes[k + 1]
        text = nxt[len(prefix):] if nxt.startswith(prefix) else ""
        jobs.append(ForcedJob(index, prefix, all_ids[j], text, moved))
    return jobs


def chat_jobs(tok: TokenizerEndpoints, continuations: list[str], name: str) -> list[ForcedJob]:
    """One forced first-token request per continuation after a chat prompt; a continuation
    that is not exactly one token on its own (BOS aside) is refused."""
    bos = tok.tokenize("")  # what the server adds before any text ([] or [BOS])
    jobs = []
    for i, cont in enumerate(continuations):
        ids = tok.tokenize(cont)
        ids = ids[len(bos):] if ids[:len(bos)] == bos else ids
        if len(ids) != 1:
            raise UserError(
                f"cannot score {cont!r} after a chat prompt on {name}: it is {len(ids)} tokens, "
                "and through the chat API only the first token of the reply can be forced; "
                'use a plain-text frame (chat = "never")')
        jobs.append(ForcedJob(i, "", ids[0], tok.detokenize(ids)))
    return jobs


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def forced_request(job: ForcedJob, k: int) -> dict[str, Any]:
    """The ``/completions`` body that forces ``job.token_id`` after ``job.prefix``."""
    return {"prompt": job.prefix, "max_tokens": 1, "temperature": 0, "logprobs": k,
            "logit_bias": {str(job.token_id): FORCE_BIAS}, "logit_bias_type": "input_ids"}


def forced_chat_request(job: ForcedJob, k: int) -> dict[str, Any]:
    """The ``/chat/completions`` fields that force ``job.token_id`` as the reply's first token."""
    return {"max_tokens": 1, "temperature": 0, "logprobs": True, "top_logprobs": k,
            "logit_bias": {str(job.token_id): FORCE_BIAS}, "logit_bias_type": "input_ids"}


def read_forced(resp: dict[str, Any], job: ForcedJob, name: str) -> TokenScore:
    choices = resp.get("choices") or [{}]
    lp = choices[0].get("logprobs") if isinstance(choices[0], dict) else None
    if not isinstance(lp, dict) or not lp.get("token_logprobs"):
        raise UserError(f"server for {name} returned no log-probs for /completions "
                        "(logprobs); myopia needs a server that returns them")
    value = float(lp["token_logprobs"][0])
    tops = (lp.get("top_logprobs") or [None])[0]
    return _forced_score(job, str(choices[0].get("text", "")), value, tops, name)


def read_forced_chat(resp: dict[str, Any], job: ForcedJob, name: str) -> TokenScore:
    choices = resp.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    content = (choice.get("logprobs") or {}).get("content") or []
    if not content or "logprob" not in content[0]:
        raise UserError(f"server for {name} returned no log-probs for /chat/completions "
                        "(logprobs=true); myopia needs a server that returns them")
    first = content[0]
    tops = {str(d["token"]): float(d["logprob"]) for d in first.get("top_logprobs") or []}
    got = str(first.get("token", (choice.get("message") or {}).get("content") or ""))
    return _forced_score(job, got, float(first["logprob"]), tops, name)


def _forced_score(job: ForcedJob, got: str, value: float, tops: dict[str, float] | None,
                  name: str) -> TokenScore:
    if job.token_text and got != job.token_text:
        raise UserError(f"server for {name} ignored logit_bias (generated {got!r}, not the "
                        f"forced {job.token_text!r}); exact scoring through it is refused")
    # rank: approximate, the server keys its top-k by text (same-text ids overwrite)
    return TokenScore(token=job.token_text or got, token_id=job.token_id, logprob=value,
                      rank=rank_in_top(tops, got, value), entropy=math.nan)


def assemble(context: str, continuations: list[str], jobs: list[ForcedJob],
             scores: list[TokenScore]) -> list[ScoredContinuation]:
    out = [ScoredContinuation(context=context, continuation=c) for c in continuations]
    for job, score in zip(jobs, scores):
        out[job.index].tokens.append(score)
        out[job.index].moved = job.moved
    return out
