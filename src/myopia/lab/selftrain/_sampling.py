"""Drawing completions of many prompts at once, on the key/value cache.

:func:`sample` takes a batch of prompts of one token length (``(N, P)`` ids), forwards them
once, then draws one token per row per step from the cached keys and values (the draw is
``myopia.models``' own temperature / top-k / top-p draw, with a seeded generator, so a round is
reproducible). A row stops after a *stop token* (a token that writes a newline, for game answers)
and is padded from there; the model's joint log-prob of each completion (at temperature 1) is
recorded as it is drawn. :func:`beam` gives the K best completions of each prompt by beam search
instead (``transformers``' implementation, no length penalty), the known decoding confound.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...models import SamplingParams
from ...models._sampling import draw
from ._rloo import sequence_logprobs


@dataclass
class Completions:
    """``N`` completions of prompts of one length: ids right-padded, ``mask`` 1 on real tokens."""

    prompt_ids: torch.Tensor  # (N, P)
    ids: torch.Tensor  # (N, L)
    mask: torch.Tensor  # (N, L) float
    logprobs: torch.Tensor  # (N,) float64: joint log-prob under the drawing model (temperature 1)

    def __len__(self) -> int:
        return self.ids.shape[0]

    def rows(self, index: torch.Tensor | list[int]) -> "Completions":
        index = torch.as_tensor(index, dtype=torch.long)
        return Completions(self.prompt_ids[index], self.ids[index], self.mask[index], self.logprobs[index])

    def token_lists(self) -> list[list[int]]:
        return [r[m.bool()].tolist() for r, m in zip(self.ids, self.mask)]


@torch.no_grad()
def sample(model, prompt_ids: torch.Tensor, max_new: int, gen: torch.Generator, params: SamplingParams | None = None,
           stop_ids: set[int] | frozenset[int] = frozenset(), pad_id: int = 0) -> Completions:
    """``max_new`` tokens after each row of ``prompt_ids`` (N, P), drawn with ``params``
    (temperature, top-k, top-p; its seed is unused: ``gen`` draws). A row ends after a token in
    ``stop_ids`` (kept in the completion)."""
    params = params or SamplingParams(max_tokens=max_new)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n = prompt_ids.shape[0]
    out = model(input_ids=prompt_ids.to(device), use_cache=True, logits_to_keep=1)
    cache, logits = out.past_key_values, out.logits[:, -1].float().cpu()  # (N, V)
    tokens = torch.full((n, max_new), pad_id, dtype=torch.long)  # (N, L)
    mask = torch.zeros(n, max_new)
    logprob = torch.zeros(n, dtype=torch.float64)
    done = torch.zeros(n, dtype=torch.bool)
    stop = torch.tensor(sorted(stop_ids) or [-1])
    for step in range(max_new):
        nxt = draw(logits, params, gen)  # (N,)
        lp = torch.log_softmax(logits.double(), dim=-1).gather(1, nxt[:, None])[:, 0]  # (N,)
        live = ~done
        tokens[live, step] = nxt[live]
        mask[live, step] = 1.0
        logprob[live] += lp[live]
        done |= torch.isin(nxt, stop)
        if bool(done.all()) or step == max_new - 1:
            break
        feed = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        out = model(input_ids=feed[:, None].to(device), past_key_values=cache, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1].float().cpu()
    model.train(was_training)
    return Completions(prompt_ids.cpu(), tokens, mask, logprob)


@torch.no_grad()
def beam(model, prompt_ids: torch.Tensor, width: int, max_new: int, stop_ids: set[int] | frozenset[int] = frozenset(),
         pad_id: int = 0) -> Completions:
    """The ``width`` best completions of each row of ``prompt_ids`` (N, P) by beam search (no
    length penalty; without stop tokens every beam has ``max_new`` tokens): N x width
    completions, row i's beams at i*width .. i*width + width - 1, best first."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows = []
    for r in prompt_ids:
        ids = r[None].to(device)  # (1, P)
        seqs = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), num_beams=width,
                              num_return_sequences=width, max_new_tokens=max_new,
                              min_new_tokens=0 if stop_ids else max_new, do_sample=False, length_penalty=0.0,
                              early_stopping=True, eos_token_id=sorted(stop_ids) or None, pad_token_id=pad_id)
        rows += seqs[:, ids.shape[1]:].cpu().tolist()
    tokens = torch.full((len(rows), max_new), pad_id, dtype=torch.long)  # (N*width, L)
    mask = torch.zeros(len(rows), max_new)
    for i, row in enumerate(rows):
        for j, t in enumerate(row[:max_new]):
            tokens[i, j], mask[i, j] = t, 1.0
            if t in stop_ids:
                break
    prompts = prompt_ids.cpu().repeat_interleave(width, dim=0)  # (N*width, P)
    logprobs = sequence_logprobs(model, prompts, tokens, mask).double()
    model.train(was_training)
    return Completions(prompts, tokens, mask, logprobs)
