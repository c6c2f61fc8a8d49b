"""White-box backend: any ``transformers`` causal LM (``hf:``, ``gguf:``, bundled names, ``lab:``).

Scoring is exact teacher forcing. Where the context ends and the scored tokens begin is
set by ``boundary`` (:mod:`._boundary` for ``natural`` and ``lm-eval``, :mod:`._exact`
for ``exact``); each rule yields context tokens and continuation tokens, and the model
then sees ``context_tokens + continuation_tokens``.

Speed comes from exact tricks only (the numbers change by float rounding at most):
- shared token prefixes are computed once. The distinct contexts are sorted; neighbours
  that share a prefix worth it (``_shared_runs``) get its keys/values from one batch-1
  forward pass, which is then extended for what they share further, like the radix
  caches of vLLM and SGLang. The rest of each context is forwarded in right-padded batches
  from that cache;
- continuations of one context reuse the context's cache; a continuation whose tokens
  (all but the last) begin another's is read off the other's forward pass; a context with
  a single continuation carries it in its own row instead;
- the unembedding is applied only at the positions whose log-probs are needed, and each
  distinct prediction row is normalised once.

A right-padded cache row has padding between its context and a continuation: it is masked
and the continuation gets its true positions. A model with sliding-window attention gets
such holes only while everything fits in the window (else a batch holds equal lengths).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import torch

from .._errors import UserError
from . import _exact
from ._base import (
    Capabilities,
    Context,
    Prompt,
    Sample,
    SamplingParams,
    ScoredContinuation,
    TokenScore,
    WhiteBoxModel,
    check_boundary,
)
from ._boundary import Cut, Tokens, lmeval_cut, natural_cut
from ._placement import budgets_for
from ._sampling import draw
from ._speculative import sample_with_drafts

# A batch's bounds (rows; rows x (cached + new tokens), the key/value memory; tokens x vocab
# log-prob floats) come from _placement.budgets_for: fixed on a CPU, from free memory on a GPU,
# halved after an out-of-memory error (_halving).
# A shared prefix is computed once when it extends the current one by at least _MIN_STEP
# tokens and saves at least _MIN_SAVED token positions (one more forward pass is not free).
_MIN_STEP = 4
_MIN_SAVED = 32


@dataclass
class _Request:
    index: int
    rendered: str
    continuation: str
    ctx_ids: list[int]
    cont_ids: list[int]
    boundary: str = "natural"
    cut: Cut | None = None  # how the boundary rule cut the pair (None: token ids given)


class HFModel(WhiteBoxModel):
    """A ``transformers`` causal LM with its tokenizer.

    ``model`` and ``tokenizer`` are ordinary ``transformers`` objects; use this class
    directly to wrap one you already have: ``HFModel(model, tokenizer, name="mine")``.
    """

    capabilities = Capabilities(score=True, next_token=True, sample=True, white_box=True)
    lab_dir: str | None = None  # a lab: model's checkpoint folder (its multi-token heads live there)

    def __init__(self, model, tokenizer, name: str = "hf", batch_size: int | None = None,
                 exact_limit: int = 1024, exact_tol: float = 1e-6):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.device = next(model.parameters()).device
        budgets = budgets_for(model, self.device)
        self.batch_size = batch_size or budgets.batch_size
        self.token_budget, self.logit_budget = budgets.tokens, budgets.logits
        self.sample_rows: int | None = None  # samples drawn per batch; None: all n (until memory runs out)
        self.max_length = _context_window(model)
        self.window = _sliding_window(model)
        # the token to condition on when a context is empty (lm-evaluation-harness does the same)
        self.prefix_token_id = _first_not_none(tokenizer.bos_token_id, tokenizer.eos_token_id)
        self._tokens = Tokens(tokenizer, self.prefix_token_id, name)
        # boundary="exact": the most token prefixes evaluated per continuation, and the share
        # of each sum the search may leave out (a certified bound; 0 sums every tokenization)
        self.exact_limit = exact_limit
        self.exact_tol = exact_tol
        self._vocabulary: _exact.Vocabulary | None = None

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
        return text, self._tokens.stand_in(ids)

    def _encode(self, text: str, special: bool) -> list[int]:
        # a chat template already contains its special tokens
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def _split(self, context: Context, continuation: str, index: int, boundary: str = "natural") -> _Request:
        if not continuation:
            raise UserError("empty continuation: a continuation needs at least one character")
        text = self.render(context)
        if boundary == "lm-eval":
            cut = lmeval_cut(self._tokens, text, continuation)
        else:
            cut = natural_cut(self._tokens, text, continuation, chat=self._is_chat(context))
        if not cut.cont_ids:
            why = (" (lm-evaluation-harness's joint tokenization puts all of it in the context's "
                   "tokens, and lm-eval itself stops on such a pair)" if boundary == "lm-eval" else "")
            raise UserError(f"continuation {continuation!r} encodes to no tokens for model {self.name}{why}")
        self._check_window(len(cut.ctx_ids) + len(cut.cont_ids))
        return _Request(index, text, continuation, cut.ctx_ids, cut.cont_ids, boundary, cut)

    def _check_window(self, total: int) -> None:
        if self.max_length and total > self.max_length:
            raise UserError(
                f"context + continuation is {total} tokens, longer than model {self.name}'s "
                f"window of {self.max_length}"
            )

    def cut(self, context: Context, text: str, boundary: str = "natural") -> Cut:
        """The token ids ``boundary`` gives (context, ``text``): what :meth:`score` scores."""
        check_boundary(boundary)
        if boundary == "exact":
            raise UserError('boundary "exact" sums over every tokenization of the text, so it has no '
                            'single token sequence to cut; use boundary "natural" or "lm-eval"')
        return self._split(context, text, 0, boundary).cut

    @torch.no_grad()
    def score_cuts(self, context: Context, cuts: Sequence[Cut]) -> list[ScoredContinuation]:
        """Score cuts of ``context`` made by :meth:`cut` (their ``cont_ids`` may be shortened):
        each ``cont_ids`` after its ``ctx_ids``. ``continuation`` is the text the scored tokens
        spell, less the moved characters."""
        rendered = self.render(context)
        reqs = []
        for i, c in enumerate(cuts):
            if not c.cont_ids:
                raise UserError("empty continuation: a continuation needs at least one token")
            self._check_window(len(c.ctx_ids) + len(c.cont_ids))
            spelled = self.tokenizer.decode(list(c.cont_ids))
            text = spelled[len(c.moved):] if c.moved and spelled.startswith(c.moved) else spelled
            reqs.append(_Request(i, rendered, text, list(c.ctx_ids), list(c.cont_ids), c.boundary, c))
        return self._score(reqs)

    # -- scoring --------------------------------------------------------------------
    def score(self, context: Context, continuations: Sequence[str],
              boundary: str = "natural") -> list[ScoredContinuation]:
        return self.score_many([(context, c) for c in continuations], boundary=boundary)

    @torch.no_grad()
    def score_many(self, requests: Sequence[tuple[Context, str]],
                   boundary: str = "natural") -> list[ScoredContinuation]:
        check_boundary(boundary)
        if boundary == "exact":
            return self._score_exact(requests)
        return self._score([self._split(ctx, cont, i, boundary) for i, (ctx, cont) in enumerate(requests)])

    def continuation_ids(self, context: Context, text: str) -> list[int]:
        """Token ids of ``text`` as a generation after ``context`` writes it, aligned with
        :meth:`encode_context` (what :meth:`sample` continues and :meth:`score_ids` scores):
        the joint tokenization's tail when the context's tokens begin it, else ``text`` on its
        own, since a sample drawn after the context's tokens cannot hold a token that
        straddles the boundary. :meth:`score`'s ``natural`` rule scores such a token instead."""
        rendered, ctx_ids = self.encode_context(context)
        return self._joint_tail(ctx_ids, self._encode(rendered + text, special=not self._is_chat(context)), text)

    def _joint_tail(self, ctx_ids: list[int], whole: list[int], text: str) -> list[int]:
        """The tokens of ``text`` after ``ctx_ids``: the tail of the joint tokenization ``whole``
        when it starts with ``ctx_ids``; when the context's last token merges with the text
        (``A:`` + ``"1"`` -> ``A``, ``:"``, ``1``, ``"``), ``text`` tokenized on its own."""
        if whole[: len(ctx_ids)] == ctx_ids and len(whole) > len(ctx_ids):
            return whole[len(ctx_ids) :]
        return self._encode(text, special=False)

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
            reqs.append(_Request(i, rendered, self.tokenizer.decode(list(ids)), ctx_ids, list(ids), "ids"))
        return self._score(reqs)

    def _score(self, reqs: list[_Request]) -> list[ScoredContinuation]:
        return self._halving(lambda: self._score_batched(reqs))

    def _score_batched(self, reqs: list[_Request]) -> list[ScoredContinuation]:
        """Score requests level by level: shared context prefixes, then the contexts' own
        tokens, then the continuations (see the module docstring)."""
        if not reqs:
            return []
        by_ctx: dict[tuple[int, ...], list[_Request]] = defaultdict(list)
        for r in reqs:
            by_ctx[tuple(r.ctx_ids)].append(r)
        stats: dict[int, list] = {r.index: [None] * len(r.cont_ids) for r in reqs}
        self._score_under_prefix(sorted(by_ctx), 0, None, by_ctx, stats)
        return [self._scored(r, stats[r.index]) for r in reqs]

    def _score_under_prefix(self, contexts, plen: int, cache, by_ctx, stats) -> None:
        """Score the (sorted, distinct) ``contexts``, which all start with the same ``plen``
        tokens whose keys/values are ``cache`` (batch 1; None when plen is 0)."""
        runs, rest = _shared_runs(contexts, plen)
        for qlen, members in runs:
            # extend the shared prefix once (batch 1), then recurse on what differs
            ext = torch.tensor([members[0][plen:qlen]], device=self.device)  # (1, qlen - plen)
            sub = self.model(input_ids=ext, past_key_values=_select_cache(cache, [0]), use_cache=True, logits_to_keep=1)
            self._score_under_prefix(members, qlen, sub.past_key_values, by_ctx, stats)
        rows = sorted(rest, key=len, reverse=True)
        for chunk in _greedy_batches(rows, lambda c: self._context_batch_fits(c, plen, by_ctx)):
            self._score_contexts(chunk, plen, cache, by_ctx, stats)

    def _score_contexts(self, chunk, plen: int, cache, by_ctx, stats) -> None:
        """One batch of contexts: their tokens after the prefix in one right-padded forward
        (a context with a single continuation carries it along), then the continuations of
        the others from the contexts' key/value cache."""
        rows = [list(c[plen:]) + _inline(by_ctx[c]) for c in chunk]
        starts = [len(c) - plen - 1 for c in chunk]  # row position predicting the first continuation token
        k0, k1 = min(starts), max(len(r) for r in rows)
        out = self._extend(cache, None, [0] * len(chunk), rows, keep=torch.arange(k0, k1))  # (B, K, V)
        preds, feeds = [], []
        for b, c in enumerate(chunk):
            group = by_ctx[c]
            n = len(group[0].cont_ids) if len(group) == 1 else 1  # tokens predicted in this pass
            preds += [(b, starts[b] - k0 + j, r, j) for r in group for j in range(n)]
            if len(group) > 1:
                feeds += [(b, f, users) for f, users in _feed_rows(group)]
        _record(out.logits, preds, stats)
        if not feeds:
            return
        lens = [plen + len(r) for r in rows]  # the cache's rows, right-padded to max(lens)
        feeds.sort(key=lambda x: -len(x[1]))
        for batch in _greedy_batches(feeds, lambda fs: self._feed_batch_fits(fs, max(lens))):
            o = self._extend(out.past_key_values, lens, [b for b, _, _ in batch], [f for _, f, _ in batch], keep=0)
            _record(o.logits, [(k, j - 1, r, j) for k, (_, _, users) in enumerate(batch)
                               for r in users for j in range(1, len(r.cont_ids))], stats)

    def _extend(self, cache, lens, parents: list[int], rows: list[list[int]], keep):
        """Forward ``rows`` of new tokens, row i continuing row ``parents[i]`` of ``cache``
        (None: no past). ``lens``: the real lengths of the cache's rows (None: no padding);
        a row shorter than the cache is right-padded there, so its padding is masked and the
        new tokens get their true positions. Returns the model output (logits at ``keep``)."""
        ids = _right_pad(rows, self._pad_id()).to(self.device)  # (B, T)
        past = _select_cache(cache, parents)
        kw = {}
        width = max(lens) if lens is not None else 0
        if lens is not None and any(lens[p] < width for p in parents):
            plens = torch.tensor([lens[p] for p in parents])  # (B,)
            seen = torch.arange(width)[None, :] < plens[:, None]  # (B, width) real cached tokens
            new = torch.tensor([[j < len(r) for j in range(ids.shape[1])] for r in rows])  # (B, T)
            kw["attention_mask"] = torch.cat([seen, new], dim=1).long().to(self.device)  # (B, width + T)
            kw["position_ids"] = (plens[:, None] + torch.arange(ids.shape[1])).to(self.device)  # (B, T)
        if isinstance(keep, torch.Tensor):
            keep = keep.to(self.device)
        return self.model(input_ids=ids, past_key_values=past, use_cache=True, logits_to_keep=keep, **kw)

    def _context_batch_fits(self, chunk, plen: int, by_ctx) -> bool:
        """Batch size, logit memory, key/value memory, and sliding windows: a model with a
        sliding window gets padded rows only while everything fits inside the window."""
        lens = [len(c) - plen + len(_inline(by_ctx[c])) for c in chunk]
        span = max(lens) - min(len(c) - plen - 1 for c in chunk)
        width = plen + max(lens)
        feed = max(max(len(r.cont_ids) for r in by_ctx[c]) for c in chunk)
        if len(chunk) > self.batch_size or len(chunk) * width > self.token_budget:
            return len(chunk) == 1
        if len(chunk) * span * self._vocab() > self.logit_budget:
            return len(chunk) == 1
        return self.window is None or width + feed < self.window or len(set(lens)) == 1

    def _feed_batch_fits(self, feeds, width: int) -> bool:
        t = max(len(f) for _, f, _ in feeds)
        ok = len(feeds) <= self.batch_size and len(feeds) * (width + t) <= self.token_budget
        return len(feeds) == 1 or (ok and len(feeds) * t * self._vocab() <= self.logit_budget)

    def _vocab(self) -> int:
        return self.model.config.get_text_config().vocab_size

    def _scored(self, r: _Request, stats: list) -> ScoredContinuation:
        texts = self.tokenizer.batch_decode([[t] for t in r.cont_ids])
        tokens = [
            TokenScore(token=text, token_id=t, logprob=lp, rank=rank, entropy=ent)
            for text, t, (lp, rank, ent) in zip(texts, r.cont_ids, stats)
        ]
        cut = r.cut or Cut(r.ctx_ids, r.cont_ids)
        return ScoredContinuation(context=r.rendered, continuation=r.continuation, tokens=tokens,
                                  boundary=r.boundary, moved=cut.moved, dropped=cut.dropped,
                                  repeated=cut.repeated)

    # -- boundary="exact" -----------------------------------------------------------------
    def _score_exact(self, requests: Sequence[tuple[Context, str]]) -> list[ScoredContinuation]:
        """The string-level conditional of each pair (:mod:`._exact`), context by context."""
        if self._vocabulary is None:
            self._vocabulary = _exact.vocabulary(self.tokenizer, self.name)
        groups: dict[tuple[str, bool], list[tuple[int, str]]] = defaultdict(list)
        for i, (ctx, cont) in enumerate(requests):
            if not cont:
                raise UserError("empty continuation: a continuation needs at least one character")
            groups[(self.render(ctx), self._is_chat(ctx))].append((i, cont))
        out: list[ScoredContinuation | None] = [None] * len(requests)
        for (rendered, chat), items in groups.items():
            plan = _exact.plan_context(self._vocabulary, self._tokens, rendered, chat, items)
            search = _exact.Search(plan, self._vocabulary, self.exact_tol, self.exact_limit)
            search.run(self._prefix_logits(plan.a_ids))
            for target, scored in zip(plan.targets, search.results(self.tokenizer)):
                out[target.index] = scored
        return out

    def _prefix_logits(self, a_ids: list[int]):
        """A function from token paths to the next-token logits (V,) after ``a_ids`` + each
        path: ``a_ids`` forwarded once (batch 1), the paths as right-padded rows from its cache."""
        ctx = self.model(input_ids=torch.tensor([a_ids], device=self.device), use_cache=True, logits_to_keep=1)

        def next_logits(paths: list[tuple[int, ...]]) -> list[torch.Tensor]:
            if self.max_length and len(a_ids) + max(map(len, paths)) > self.max_length:
                raise UserError(f"boundary exact: context + continuation exceed model {self.name}'s "
                                f"window of {self.max_length}")
            out: list[torch.Tensor | None] = [ctx.logits[0, -1] if not p else None for p in paths]
            rows = sorted((i for i, p in enumerate(paths) if p), key=lambda i: -len(paths[i]))
            fits = lambda b: self._feed_batch_fits([(0, paths[i], None) for i in b], len(a_ids))  # noqa: E731
            for batch in _greedy_batches(rows, fits):
                lens = [len(paths[i]) for i in batch]
                k0 = min(lens) - 1
                o = self._extend(ctx.past_key_values, None, [0] * len(batch), [list(paths[i]) for i in batch],
                                 keep=torch.arange(k0, max(lens)))  # logits (B, K, V)
                for b, i in enumerate(batch):
                    out[i] = o.logits[b, lens[b] - 1 - k0]
            return out

        return next_logits

    def _pad_id(self) -> int:
        return _first_not_none(self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, 0)

    # -- memory ---------------------------------------------------------------------
    def _halving(self, work):
        """``work()``; after an out-of-memory error, halve the batch bounds and do it again
        (the results do not depend on the batch size beyond float rounding)."""
        while True:
            try:
                return work()
            except torch.OutOfMemoryError:
                if not self._shrink():
                    raise
                self._release_memory()

    def _release_memory(self) -> None:
        """After an out-of-memory error: hand the failed batch's cached blocks back to the GPU."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _shrink(self) -> bool:
        """Halve the bounds; False when a batch is one row already."""
        if self.batch_size == 1:
            return False
        self.batch_size //= 2
        self.token_budget, self.logit_budget = max(1, self.token_budget // 2), max(1, self.logit_budget // 2)
        return True

    # -- distributions and sampling ---------------------------------------------------
    def next_token_logprobs(self, contexts: Sequence[Context]) -> torch.Tensor:
        encoded = [self.encode_context(c)[1] for c in contexts]
        return self._halving(lambda: self._next_token_logprobs(encoded))

    @torch.no_grad()
    def _next_token_logprobs(self, encoded: list[list[int]]) -> torch.Tensor:
        out = torch.empty(len(encoded), self._vocab())
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            ids = _right_pad([encoded[i] for i in idx], self._pad_id())  # (B, T)
            last = torch.tensor([len(encoded[i]) - 1 for i in idx])  # (B,)
            logits = self.model(input_ids=ids.to(self.device), use_cache=False).logits  # (B, T, V)
            rows = logits[torch.arange(len(idx), device=logits.device), last.to(logits.device)]  # (B, V)
            out[idx] = torch.log_softmax(rows.float(), dim=-1).cpu()
        return out

    def sample(self, context: Context, n: int, params: SamplingParams) -> list[Sample]:
        """``n`` continuations drawn with a seeded generator (temperature 0: greedy), in one
        batch; after an out-of-memory error, in batches of half as many rows, drawn one after
        another from the same generator (so the draw depends on the batch, as it must)."""
        text, ctx_ids = self.encode_context(context)
        if self.max_length and len(ctx_ids) + params.max_tokens > self.max_length:
            raise UserError(
                f"context ({len(ctx_ids)} tokens) + max_tokens ({params.max_tokens}) exceeds "
                f"model {self.name}'s window of {self.max_length}"
            )
        while True:
            rows = min(n, self.sample_rows or n)
            gen = torch.Generator(device="cpu").manual_seed(params.seed)
            try:
                tokens = [self._sample_rows(ctx_ids, min(rows, n - s), params, gen) for s in range(0, n, rows)]
                break
            except torch.OutOfMemoryError:
                if rows == 1:
                    raise
                self.sample_rows = rows // 2
                self._release_memory()
        stop_ids = self._stop_ids()
        samples = []
        for row in [r for chunk in tokens for r in chunk.tolist()]:  # chunks may differ in length
            ids = []
            for t in row:
                if t in stop_ids:
                    break
                ids.append(t)
            samples.append(Sample(context=text, text=self.tokenizer.decode(ids), token_ids=ids))
        return samples

    @torch.no_grad()
    def _sample_rows(self, ctx_ids: list[int], n: int, params: SamplingParams, gen) -> torch.Tensor:
        """(n, steps) token ids drawn after ``ctx_ids`` in one batch (rows that stopped are padded)."""
        stop_ids = self._stop_ids()
        out = self.model(input_ids=torch.tensor([ctx_ids], device=self.device), use_cache=True, logits_to_keep=1)
        cache = _select_cache(out.past_key_values, [0] * n)
        logits = out.logits[:, -1].float().expand(n, -1)  # (n, V)
        tokens = torch.empty(n, 0, dtype=torch.long)
        done = torch.zeros(n, dtype=torch.bool)
        for step in range(params.max_tokens):
            if step < params.min_tokens and stop_ids:
                logits = logits.clone()
                logits[:, stop_ids] = -math.inf
            nxt = draw(logits.cpu(), params, gen)  # (n,)
            nxt = torch.where(done, torch.full_like(nxt, self._pad_id()), nxt)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            done |= torch.isin(nxt, torch.tensor(stop_ids or [-1]))
            if bool(done.all()) or step == params.max_tokens - 1:
                break
            out = self.model(input_ids=nxt[:, None].to(self.device), past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[:, -1].float()
        return tokens

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

    def sample_with_drafts(self, context: Context, n: int, params: SamplingParams, draft: int) -> list[Sample]:
        return sample_with_drafts(self, context, n, params, draft)

    def close(self) -> None:
        self.model = None


def _select_cache(cache, rows: list[int]):
    """A copy of a key/value cache holding the given batch rows, repeats allowed (the
    original is kept, so it can be extended again). None stays None."""
    if cache is None:
        return None
    import copy

    c = copy.copy(cache)
    c.layers = [copy.copy(layer) for layer in cache.layers]
    idx = torch.tensor(rows)
    for layer in c.layers:
        for attr in ("keys", "values"):
            t = getattr(layer, attr, None)
            if isinstance(t, torch.Tensor) and t.dim() == 4:
                setattr(layer, attr, t[idx.to(t.device)])  # (len(rows), nh, T, hs)
    return c


def _right_pad(seqs: list[list[int]], pad: int) -> torch.Tensor:
    ids = torch.full((len(seqs), max(len(s) for s in seqs)), pad, dtype=torch.long)  # (B, T)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
    return ids


def _record(logits: torch.Tensor, preds: list, stats: dict[int, list]) -> None:
    """Log-prob, rank and entropy of predicted tokens: each ``(b, k, request, j)`` in
    ``preds`` says that token j of the request is predicted by ``logits[b, k]``; the triple
    goes to ``stats[request.index][j]``. Each distinct row is normalised once."""
    if not preds:
        return
    cells = sorted({(b, k) for b, k, _, _ in preds})
    where = {cell: i for i, cell in enumerate(cells)}
    bk = torch.tensor(cells, device=logits.device)  # (N, 2)
    logp = torch.log_softmax(logits[bk[:, 0], bk[:, 1]].float(), dim=-1)  # (N, V)
    entropy = -(logp.exp() * logp).nan_to_num().sum(dim=-1)  # (N,)
    row = torch.tensor([where[(b, k)] for b, k, _, _ in preds], device=logp.device)  # (P,)
    target = torch.tensor([r.cont_ids[j] for _, _, r, j in preds], device=logp.device)  # (P,)
    lp = logp[row, target]  # (P,)
    rank = torch.cat([(logp[row[s : s + 64]] > lp[s : s + 64, None]).sum(dim=-1) + 1
                      for s in range(0, len(preds), 64)])  # (P,)
    for (_, _, r, j), v in zip(preds, zip(lp.tolist(), rank.tolist(), entropy[row].tolist())):
        stats[r.index][j] = v


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """Length of the common prefix, leaving at least one token of each to forward."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return min(n, len(a) - 1, len(b) - 1)


def _shared_runs(contexts: list[tuple[int, ...]], plen: int):
    """Split sorted contexts that share ``plen`` tokens into runs that share more, each as
    (its prefix length, members), and the rest. A run is a maximal stretch of neighbours
    sharing at least ``plen + _MIN_STEP`` tokens, kept when computing its prefix once saves
    at least ``_MIN_SAVED`` token positions."""
    runs, rest = [], []
    cur, q = [contexts[0]], None
    for prev, c in zip(contexts, contexts[1:] + [None]):
        n = _common_prefix(prev, c) if c is not None else -1
        if n >= plen + _MIN_STEP:
            cur.append(c)
            q = n if q is None else min(q, n)
            continue
        if len(cur) > 1 and (len(cur) - 1) * (q - plen) >= _MIN_SAVED:
            runs.append((q, cur))
        else:
            rest += cur
        cur, q = [c], None
    return runs, rest


def _inline(group: list[_Request]) -> list[int]:
    """The tokens a context's row carries past the context: all but the last of its
    continuation when it has only one."""
    return group[0].cont_ids[:-1] if len(group) == 1 else []


def _feed_rows(group: list[_Request]) -> list[tuple[list[int], list[_Request]]]:
    """The continuation rows to forward after a shared context, each with the requests it
    serves: a request's tokens but the last, unless they begin a longer such row."""
    rows: list[tuple[list[int], list[_Request]]] = []
    owner: dict[tuple[int, ...], int] = {}  # every prefix of a kept row -> that row
    for r in sorted(group, key=lambda r: -len(r.cont_ids)):
        feed = tuple(r.cont_ids[:-1])
        if not feed:
            continue
        if feed not in owner:
            for n in range(1, len(feed) + 1):
                owner.setdefault(feed[:n], len(rows))
            rows.append((list(feed), []))
        rows[owner[feed]][1].append(r)
    return rows


def _greedy_batches(items: list, fits) -> list[list]:
    """Consecutive batches, each grown while ``fits(batch)`` holds (a single item always goes)."""
    out: list[list] = []
    for x in items:
        if out and fits(out[-1] + [x]):
            out[-1].append(x)
        else:
            out.append([x])
    return out


def _sliding_window(model) -> int | None:
    w = getattr(model.config.get_text_config(), "sliding_window", None)
    return w if isinstance(w, int) and w > 0 else None


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
