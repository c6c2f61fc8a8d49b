"""The ``transplant`` reader (Future Lens's fixed-prompt causal intervention) and the run it
shares with the learned prompt.

The state h_l[t] is put into layer l at the last position of a fixed generic context (BOS first
where the model has one), and the frozen model runs on from there: its prediction at that
position is the reading for t+1; for N > 1 the model then decodes greedily, each token fed back,
and its prediction after N-1 such tokens is the reading for t+N. Nothing is trained. At layer 0
the state is the token's embedding, so the reading is "what the model says after this token in
the generic context"; at the last layer it is the model's own next-token prediction for N = 1.

The context before the last position is the same for every state, so its keys and values are
computed once and shared by a batch (a KV cache repeated along the batch).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch

from ...interp import logits_from_final, replace_residual
from ._classes import collapse_logits
from ._readers import Reading
from ._states import LensStates

EVAL_BATCH = 64  # states per transplanted run at evaluation


def context_ids(tokenizer, text: str) -> torch.Tensor:
    """(P,) token ids of the generic context: BOS (where the model has one), then ``text``."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    return torch.tensor(([bos] if bos is not None else []) + ids, dtype=torch.long)


def prefix_cache(model, prefix: torch.Tensor):
    """The KV cache of the context before its last position, from its input vectors (P-1, d);
    None when there is nothing before it. Differentiable when ``prefix`` requires grad."""
    if len(prefix) == 0:
        return None
    return model.base_model(inputs_embeds=prefix[None], use_cache=True).past_key_values  # batch 1


def batched(cache, batch: int, keep: bool):
    """``cache`` (batch 1) repeated for ``batch`` sequences; a copy when ``keep`` (the cache is
    reused for later batches), else in place (which keeps the autograd graph)."""
    if cache is None:
        return None
    if keep:
        cache = copy.deepcopy(cache)
    cache.batch_repeat_interleave(batch)
    return cache


def transplant_run(
    model, cache, last: torch.Tensor, layer: int, states: torch.Tensor, steps: int, tokens: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """Put each of ``states`` (B, d) into ``layer`` at the context's last position, whose input
    vector is ``last`` (d,), after the prefix ``cache`` (already repeated for B, or None); the
    model's logits there and then for ``steps - 1`` greedily decoded tokens: a list of ``steps``
    (B, V) tensors. With ``tokens`` (n,), only those tokens' logits (B, n), for ``steps`` = 1."""
    B, d = states.shape
    base = model.base_model
    with replace_residual(model, layer, states):
        out = base(inputs_embeds=last.expand(B, 1, d), past_key_values=cache, use_cache=steps > 1)
    logits = [logits_from_final(model, out.last_hidden_state[:, -1], tokens)]  # (B, V) or (B, n)
    for _ in range(steps - 1):
        nxt = logits[-1].argmax(-1)  # (B,) greedy
        out = base(input_ids=nxt[:, None], past_key_values=out.past_key_values, use_cache=True)
        logits.append(logits_from_final(model, out.last_hidden_state[:, -1]))
    return logits


@torch.no_grad()
def transplant_readings(
    model, inputs: torch.Tensor, layer: int, states: LensStates, steps: int, batch: int = EVAL_BATCH
) -> torch.Tensor:
    """Class log-probs (n_eval, steps, V+1) of the transplanted runs of every evaluation state at
    ``layer``, in the context whose input vectors are ``inputs`` (P, d)."""
    cache = prefix_cache(model, inputs[:-1])
    x = states.stream("eval", layer)[: states.n_eval]  # (n_eval, d)
    out = []
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        logits = transplant_run(model, batched(cache, len(xb), keep=True), inputs[-1], layer, xb, steps)
        out.append(torch.stack([collapse_logits(lg, states.classes) for lg in logits], 1))  # (b, steps, V+1)
    return torch.cat(out).float()


@dataclass
class Transplant:
    """The ``transplant`` reader: the fixed generic context ``ids`` (from :func:`context_ids`)."""

    model: object
    ids: torch.Tensor
    method: ClassVar[str] = "transplant"

    def read(self, states: LensStates, layer: int) -> Reading:
        embed = self.model.get_input_embeddings()
        with torch.no_grad():
            inputs = embed(self.ids.to(embed.weight.device))  # (P, d) what the blocks see at layer 0
        return Reading(train=None, eval=transplant_readings(self.model, inputs, layer, states, states.offsets))
