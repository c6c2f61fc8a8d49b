"""White-box backend: any ``transformers`` causal LM (``hf:``, ``gguf:``, bundled names, ``lab:``).

Scoring is exact teacher forcing. The context/continuation boundary follows
lm-evaluation-harness: trailing spaces of the context move to the continuation, the
context is tokenized alone, the pair is tokenized jointly, and the continuation's tokens
are whatever the joint encoding has after the context's tokens. The model then sees
``context_tokens + continuation_tokens``.

Speed comes from two exact tricks:
- continuations that share a context share its forward pass (its key/value cache is
  computed once and repeated across the batch);
- batches are right-padded, so causal attention never lets a real token see a pad, and
  the unembedding is applied only at the positions whose log-probs are needed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import torch

from .._errors import UserError
from ._base import (
    Capabilities,
    Context,
    LanguageModel,
    Prompt,
    Sample,
    SamplingParams,
    ScoredContinuation,
    TokenScore,
)

# Upper bound on the floats in one batch of log-probs (tokens x vocab): 512 MB in float32.
_LOGIT_BUDGET = 128 * 1024 * 1024


@dataclass
class _Request:
    index: int
    rendered: str
    continuation: str
    ctx_ids: list[int]
    cont_ids: list[int]


class HFModel(LanguageModel):
    """A ``transformers`` causal LM with its tokenizer.

    ``model`` and ``tokenizer`` are ordinary ``transformers`` objects; use this class
    directly to wrap one you already have: ``HFModel(model, tokenizer, name="mine")``.
    """

    capabilities = Capabilities(score=True, next_token=True, sample=True, white_box=True)

    def __init__(self, model, tokenizer, name: str = "hf", batch_size: int = 64):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.max_length = _context_window(model)
        # the token to condition on when a context is empty (lm-evaluation-harness does the same)
        self.prefix_token_id = _first_not_none(tokenizer.bos_token_id, tokenizer.eos_token_id)

    # -- text -----------------------------------------------------------------------
    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def render(self, context: Context) -> str:
        if isinstance(context, Prompt) and context.chat:
            if not self.has_chat_template:
                raise UserError(
                    f"model {self.name} has no chat template (a base model?); prompt it with chat=false"
                )
            messages = [{"role": "user", "content": context.text}]
            if context.system is not None:
                messages.insert(0, {"role": "system", "content": context.system})
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        return context.text if isinstance(context, Prompt) else context

    def _is_chat(self, context: Context) -> bool:
        return isinstance(context, Prompt) and context.chat

    def encode_context(self, context: Context) -> tuple[str, list[int]]:
        """The rendered text and token ids of a context (BOS added where the model wants it)."""
        text = self.render(context)
        ids = self._encode(text, special=not self._is_chat(context))
        if not ids:
            if self.prefix_token_id is None:
                raise UserError(f"empty context, and model {self.name} has no BOS/EOS token to stand in")
            ids = [self.prefix_token_id]
        return text, ids

    def _encode(self, text: str, special: bool) -> list[int]:
        # a chat template already contains its special tokens
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def _split(self, context: Context, continuation: str, index: int) -> _Request:
        if not continuation:
            raise UserError("empty continuation: a continuation needs at least one character")
        text = self.render(context)
        n_spaces = len(text) - len(text.rstrip(" "))
        ctx_text, cont_text = text, continuation
        if n_spaces and not self._is_chat(context):
            ctx_text, cont_text = text[:-n_spaces], text[-n_spaces:] + continuation
        special = not self._is_chat(context)
        whole = self._encode(ctx_text + cont_text, special)
        ctx_ids = self._encode(ctx_text, special)
        cont_ids = whole[len(ctx_ids) :]
        if not ctx_ids:
            ctx_ids = [self.prefix_token_id]
        if not cont_ids:
            raise UserError(f"continuation {continuation!r} encodes to no tokens for model {self.name}")
        total = len(ctx_ids) + len(cont_ids)
        if self.max_length and total > self.max_length:
            raise UserError(
                f"context + continuation is {total} tokens, longer than model {self.name}'s "
                f"window of {self.max_length}"
            )
        return _Request(index, text, continuation, ctx_ids, cont_ids)

    # -- scoring --------------------------------------------------------------------
    def score(self, context: Context, continuations: Sequence[str]) -> list[ScoredContinuation]:
        return self.score_many([(context, c) for c in continuations])

    @torch.no_grad()
    def score_many(self, requests: Sequence[tuple[Context, str]]) -> list[ScoredContinuation]:
        reqs = [self._split(ctx, cont, i) for i, (ctx, cont) in enumerate(requests)]
        groups: dict[tuple[int, ...], list[_Request]] = defaultdict(list)
        for r in reqs:
            groups[tuple(r.ctx_ids)].append(r)
        results: dict[int, ScoredContinuation] = {}
        singles: list[_Request] = []
        for group in groups.values():
            if len(group) > 1:
                for r, s in zip(group, self._score_shared_context(group)):
                    results[r.index] = s
            else:
                singles.extend(group)
        for r, s in zip(singles, self._score_flat(singles)):
            results[r.index] = s
        return [results[i] for i in range(len(reqs))]

    def _chunks(self, reqs: list[_Request], tokens_per_row) -> list[list[_Request]]:
        """Batches that respect both batch_size and the log-prob memory budget."""
        vocab = self.model.config.get_text_config().vocab_size
        rows = sorted(reqs, key=lambda r: -tokens_per_row(r))
        out, cur, cur_tokens = [], [], 0
        for r in rows:
            n = tokens_per_row(r)
            width = max(cur_tokens, n)
            if cur and (len(cur) >= self.batch_size or (len(cur) + 1) * width * vocab > _LOGIT_BUDGET):
                out.append(cur)
                cur, width = [], n
            cur.append(r)
            cur_tokens = width
        if cur:
            out.append(cur)
        return out

    def continuation_ids(self, context: Context, text: str) -> list[int]:
        """Token ids of ``text`` as it would follow ``context`` (joint tokenization), aligned
        with :meth:`encode_context` so they can be passed to :meth:`score_ids`."""
        rendered, ctx_ids = self.encode_context(context)
        whole = self._encode(rendered + text, special=not self._is_chat(context))
        if whole[: len(ctx_ids)] == ctx_ids and len(whole) > len(ctx_ids):
            return whole[len(ctx_ids) :]
        return self._encode(text, special=False)  # the context's last token merged with the text

    @torch.no_grad()
    def score_ids(self, context: Context, continuations: Sequence[Sequence[int]]) -> list[ScoredContinuation]:
        """Score continuations given as token ids (e.g. generated ones) after ``context``,
        exactly as they were drawn: no detokenize/retokenize round trip."""
        rendered, ctx_ids = self.encode_context(context)
        reqs = []
        for i, ids in enumerate(continuations):
            if not ids:
                raise UserError("empty continuation: a continuation needs at least one token")
            if self.max_length and len(ctx_ids) + len(ids) > self.max_length:
                raise UserError(f"context + continuation exceeds model {self.name}'s window of {self.max_length}")
            reqs.append(_Request(i, rendered, self.tokenizer.decode(list(ids)), ctx_ids, list(ids)))
        if len(reqs) == 1:
            return self._score_flat(reqs)
        return self._score_shared_context(reqs)

    def _score_flat(self, reqs: list[_Request]) -> list[ScoredContinuation]:
        """Requests with different contexts: one right-padded forward per batch."""
        scored: dict[int, ScoredContinuation] = {}
        pad = self._pad_id()
        for batch in self._chunks(reqs, lambda r: len(r.ctx_ids) + len(r.cont_ids)):
            seqs = [r.ctx_ids + r.cont_ids for r in batch]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)  # (B, T)
            for i, s in enumerate(seqs):
                ids[i, : len(s)] = torch.tensor(s)
            # the first continuation token is predicted at the last context position
            start = min(len(r.ctx_ids) for r in batch) - 1
            logits = self._forward(ids.to(self.device), keep=torch.arange(start, width - 1))  # (B, T', V)
            offsets = [len(r.ctx_ids) - 1 - start for r in batch]
            for r, s in zip(batch, self._tables(batch, logits, offsets)):
                scored[r.index] = s
        return [scored[r.index] for r in reqs]

    def _score_shared_context(self, group: list[_Request]) -> list[ScoredContinuation]:
        """Continuations of one context: the context's forward pass is computed once."""
        ctx = torch.tensor([group[0].ctx_ids], device=self.device)  # (1, Tc)
        out = self.model(input_ids=ctx, use_cache=True, logits_to_keep=1)
        first = out.logits[:, -1:]  # (1, 1, V): predicts every continuation's first token
        cache = out.past_key_values
        pad = self._pad_id()
        scored: dict[int, ScoredContinuation] = {}
        for batch in self._chunks(group, lambda r: len(r.cont_ids)):
            width = max(len(r.cont_ids) for r in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)  # (B, Tk)
            for i, r in enumerate(batch):
                ids[i, : len(r.cont_ids)] = torch.tensor(r.cont_ids)
            logits = first.expand(len(batch), 1, -1)  # (B, 1, V)
            if width > 1:
                o = self.model(
                    input_ids=ids[:, :-1].to(self.device),
                    past_key_values=_repeat_cache(cache, len(batch)),
                    use_cache=True,
                    logits_to_keep=0,
                )
                logits = torch.cat([logits, o.logits], dim=1)  # (B, Tk, V)
            for r, s in zip(batch, self._tables(batch, logits, [0] * len(batch))):
                scored[r.index] = s
        return [scored[r.index] for r in group]

    def _forward(self, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=ids, use_cache=False, logits_to_keep=keep.to(ids.device))
        return out.logits  # (B, len(keep), V)

    def _tables(self, batch: list[_Request], logits: torch.Tensor, offsets: list[int]) -> list[ScoredContinuation]:
        """Per-token log-prob, rank and entropy for a batch, from (B, T, V) logits where
        request i's continuation is predicted at rows offsets[i] .. offsets[i] + L_i - 1."""
        B, L = len(batch), max(len(r.cont_ids) for r in batch)
        pos = torch.zeros(B, L, dtype=torch.long)  # (B, L) row of each prediction
        target = torch.zeros(B, L, dtype=torch.long)  # (B, L) token it must give
        for i, r in enumerate(batch):
            n = len(r.cont_ids)
            pos[i, :n] = torch.arange(offsets[i], offsets[i] + n)
            pos[i, n:] = offsets[i]
            target[i, :n] = torch.tensor(r.cont_ids)
        rows = logits.gather(1, pos.to(logits.device)[..., None].expand(-1, -1, logits.shape[-1]))  # (B, L, V)
        logp = torch.log_softmax(rows.float(), dim=-1)  # (B, L, V)
        lp = logp.gather(2, target.to(logp.device)[..., None])  # (B, L, 1)
        rank = (logp > lp).sum(dim=-1) + 1  # (B, L)
        entropy = -(logp.exp() * logp).nan_to_num().sum(dim=-1)  # (B, L)
        lp, rank, entropy = lp[..., 0].tolist(), rank.tolist(), entropy.tolist()
        out = []
        for i, r in enumerate(batch):
            texts = self.tokenizer.batch_decode([[t] for t in r.cont_ids])
            tokens = [
                TokenScore(token=texts[j], token_id=t, logprob=lp[i][j], rank=rank[i][j], entropy=entropy[i][j])
                for j, t in enumerate(r.cont_ids)
            ]
            out.append(ScoredContinuation(context=r.rendered, continuation=r.continuation, tokens=tokens))
        return out

    def _pad_id(self) -> int:
        return _first_not_none(self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, 0)

    # -- distributions and sampling ---------------------------------------------------
    @torch.no_grad()
    def next_token_logprobs(self, contexts: Sequence[Context]) -> torch.Tensor:
        encoded = [self.encode_context(c)[1] for c in contexts]
        out = torch.empty(len(encoded), self.model.config.get_text_config().vocab_size)
        pad = self._pad_id()
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)  # (B, T)
            for row, i in enumerate(idx):
                ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
            logits = self.model(input_ids=ids.to(self.device), use_cache=False).logits  # (B, T, V)
            last = torch.tensor([len(encoded[i]) - 1 for i in idx], device=logits.device)
            rows = logits[torch.arange(len(idx), device=logits.device), last]  # (B, V)
            out[idx] = torch.log_softmax(rows.float(), dim=-1).cpu()
        return out

    @torch.no_grad()
    def sample(self, context: Context, n: int, params: SamplingParams) -> list[Sample]:
        """``n`` continuations drawn in one batch with a seeded generator (temperature 0: greedy)."""
        text, ctx_ids = self.encode_context(context)
        if self.max_length and len(ctx_ids) + params.max_tokens > self.max_length:
            raise UserError(
                f"context ({len(ctx_ids)} tokens) + max_tokens ({params.max_tokens}) exceeds "
                f"model {self.name}'s window of {self.max_length}"
            )
        gen = torch.Generator(device="cpu").manual_seed(params.seed)
        stop_ids = self._stop_ids()
        out = self.model(input_ids=torch.tensor([ctx_ids], device=self.device), use_cache=True, logits_to_keep=1)
        cache = _repeat_cache(out.past_key_values, n)
        logits = out.logits[:, -1].float().expand(n, -1)  # (n, V)
        tokens = torch.empty(n, 0, dtype=torch.long)
        done = torch.zeros(n, dtype=torch.bool)
        for step in range(params.max_tokens):
            if step < params.min_tokens and stop_ids:
                logits = logits.clone()
                logits[:, stop_ids] = -math.inf
            nxt = _draw(logits.cpu(), params, gen)  # (n,)
            nxt = torch.where(done, torch.full_like(nxt, self._pad_id()), nxt)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            done |= torch.isin(nxt, torch.tensor(stop_ids or [-1]))
            if bool(done.all()) or step == params.max_tokens - 1:
                break
            out = self.model(input_ids=nxt[:, None].to(self.device), past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[:, -1].float()
        samples = []
        for row in tokens.tolist():
            ids = []
            for t in row:
                if t in stop_ids:
                    break
                ids.append(t)
            samples.append(Sample(context=text, text=self.tokenizer.decode(ids), token_ids=ids))
        return samples

    def _stop_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id if self.model.generation_config else None
        ids = eos if isinstance(eos, list) else [eos]
        ids.append(self.tokenizer.eos_token_id)
        return sorted({i for i in ids if i is not None})

    @torch.no_grad()
    def beam_search(self, context: Context, width: int, length: int) -> list[Sample]:
        """The ``width`` best continuations of exactly ``length`` tokens by beam search
        (``transformers``' implementation, no length penalty, end-of-sequence forbidden)."""
        text, ctx_ids = self.encode_context(context)
        ids = torch.tensor([ctx_ids], device=self.device)
        seqs = self.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            num_beams=width,
            num_return_sequences=width,
            max_new_tokens=length,
            min_new_tokens=length,
            do_sample=False,
            length_penalty=0.0,
            early_stopping=True,
            pad_token_id=self._pad_id(),
        )
        samples = []
        for row in seqs[:, len(ctx_ids) :].tolist():
            samples.append(Sample(context=text, text=self.tokenizer.decode(row), token_ids=row))
        return samples

    def decode_tokens(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def close(self) -> None:
        self.model = None


def _draw(logits: torch.Tensor, p: SamplingParams, gen: torch.Generator) -> torch.Tensor:
    """One token per row from (n, V) logits under temperature / top-k / top-p."""
    if p.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / p.temperature
    if p.top_k is not None and p.top_k < logits.shape[-1]:
        kth = torch.topk(logits, p.top_k, dim=-1).values[:, -1:]  # (n, 1)
        logits = logits.masked_fill(logits < kth, -math.inf)
    if p.top_p is not None and p.top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token once the mass before it already reaches top_p (the first always stays)
        drop = (probs.cumsum(dim=-1) - probs) >= p.top_p
        sorted_logits = sorted_logits.masked_fill(drop, -math.inf)
        logits = torch.full_like(logits, -math.inf).scatter(1, order, sorted_logits)
    # inverse-CDF draw: one uniform per row (torch.multinomial is slow on a 262k vocabulary)
    cdf = torch.softmax(logits.double(), dim=-1).cumsum(dim=-1)  # (n, V)
    u = torch.rand(logits.shape[0], 1, generator=gen, dtype=torch.float64) * cdf[:, -1:]  # (n, 1)
    return torch.searchsorted(cdf, u)[:, 0].clamp_(max=logits.shape[-1] - 1)


def _repeat_cache(cache, n: int):
    """A copy of a batch-1 key/value cache repeated to batch ``n`` (the original is kept)."""
    import copy

    c = copy.copy(cache)
    c.layers = [copy.copy(layer) for layer in cache.layers]
    for layer in c.layers:
        for attr in ("keys", "values"):
            t = getattr(layer, attr, None)
            if isinstance(t, torch.Tensor):
                setattr(layer, attr, t.expand(n, *t.shape[1:]).contiguous())  # (n, nh, T, hs)
    return c


def _context_window(model) -> int | None:
    cfg = model.config.get_text_config()
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _first_not_none(*values):
    for v in values:
        if v is not None:
            return v
    return None
