"""The continuations of one prompt, all of one token length, and their per-token records.

Every continuation is a list of token ids, scored exactly as drawn (no text round trip). A
listed continuation is cut into tokens after the prompt by the spec's boundary rule
(``natural``: the model's own tokenization of prompt + text, which may score a token that
covers the end of the prompt; ``lm-eval``) and cut to the length; a degenerate unit is
repeated until it fills the length.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from ...models import Context, Cut, ScoredContinuation, WhiteBoxModel
from .._base import Tables

Kind = Literal["greedy", "beam", "sample", "user", "degenerate"]


@dataclass(frozen=True)
class Drawn:
    kind: Kind
    index: int  # its place among the continuations of its kind
    ids: list[int]


def listed(model: WhiteBoxModel, prompt: Context, text: str, n: int, boundary: str) -> Cut:
    """A listed continuation after ``prompt``, cut into tokens by ``boundary`` and to ``n`` tokens."""
    cut = model.cut(prompt, text, boundary)
    return replace(cut, cont_ids=cut.cont_ids[:n])


def repeated(model: WhiteBoxModel, prompt: Context, unit: str, n: int, boundary: str) -> Cut:
    """``unit`` repeated until the continuation is exactly ``n`` tokens (cut if it overshoots)."""
    k, per_unit = n, max(1, len(model.cut(prompt, unit, boundary).cont_ids))
    while True:
        cut = model.cut(prompt, unit * k, boundary)
        if len(cut.cont_ids) >= n or k > 8 * n:
            return replace(cut, cont_ids=cut.cont_ids[:n])
        k += max(1, (n - len(cut.cont_ids)) // per_unit)


def records(key: dict, drawn: list[Drawn], scored: list[ScoredContinuation]) -> Tables:
    """One ``continuations`` record per continuation (joint and mean log-prob, mean entropy) and
    one ``tokens`` record per token (log-prob, rank, entropy), each with ``key`` first."""
    conts, toks = [], []
    for d, s in zip(drawn, scored):
        ids = {**key, "kind": d.kind, "index": d.index}
        ents = [t.entropy for t in s.tokens]
        conts.append(
            {
                **ids,
                "text": s.continuation,
                "n_tokens": len(s.tokens),
                "logprob": s.logprob,
                "mean_logprob": s.mean_logprob,
                "mean_entropy": sum(ents) / max(len(ents), 1),
                "moved": s.moved,
                "rendered_prompt": s.context,
            }
        )
        toks += [{**ids, "position": j, **t.__dict__} for j, t in enumerate(s.tokens)]
    return {"continuations": conts, "tokens": toks}
