"""``boundary="exact"``: the string-level conditional P(continuation | context).

A language model over tokens defines a distribution over strings: a string's prefix
probability is the total probability of the token sequences whose text starts with it.
The sequences that *cover* a string s are those whose text starts with s while the text
of all their tokens but the last is a proper prefix of s (Vieira et al., 2025, "From
Language Models over Tokens to Language Models over Characters"; Phan et al., 2025,
"Exact Byte-Level Probabilities from Tokenized Language Models", whose Byte-Token
Representation Lemma sums over the same cover encodings). Every token sequence whose text
starts with s extends exactly one covering sequence, so

    Q(s) = sum over covering sequences t of P(t)

and P(c | x) = Q(x + c) / Q(x), whatever the tokenizer does at the boundary.

Summing over every tokenization of the whole context is out of reach, so the context is
backed up to a token boundary that no continuation can change, and the sum runs over the
tokens after it:

1. ``x``'s own tokens are C. A boundary after C[:k] qualifies when it sits on a character
   boundary and no token of the vocabulary contains the two bytes on either side of it
   (so no token of *any* tokenization crosses it, and BPE merges on its two sides never
   interact), or right after a special token, or at the start of the text. The last one
   is taken; the joint tokens of every continuation scored are checked to begin with
   C[:k] too (else the next one back is taken).
2. A = C[:k] (with the BOS the tokenizer adds), r = the rest of the context, as bytes.
   P_exact(c | x) = Q_A(r + c) / Q_A(r), with Q_A the covering sum of the text after A:

       Q_A(s) = sum over token prefixes p after A that spell s[:i], i < len(s), of
                P(p | A) * sum over tokens t whose bytes start with s[i:] of P(t | A, p)

   The token prefixes are enumerated from the vocabulary (every token that spells the
   next bytes of s, recursively); the covering tokens of each prefix are one contiguous
   range of the vocabulary sorted by bytes. Special tokens spell no text and are left out.

3. The prefixes are visited best-first (:class:`Search`), the natural tokenization's
   first; a prefix whose whole subtree is certified to matter less than ``tol`` of each
   sum it belongs to is left out, and the mass left out is reported as a bound.

The number of token prefixes grows exponentially with len(s) (about 2^len(s) when every
substring is a token), so the mode is for short continuations (answers, labels, a few
words): more than ``limit`` prefixes evaluated per continuation of a context is refused
with a clear line. Tokens must spell text byte for byte (byte-level BPE as in GPT-2/SmolLM2, or
SentencePiece-style BPE with byte fallback as in Gemma); other tokenizers are refused.
"""

from __future__ import annotations

import heapq
import json
import math
import re
from bisect import bisect_left
from dataclasses import dataclass

import numpy as np
import torch

from .._errors import UserError
from ._base import ScoredContinuation, TokenScore
from ._boundary import Tokens, natural_cut

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


class Vocabulary:
    """A tokenizer's tokens as byte strings: spelling, covering ranges, unbreakable pairs."""

    def __init__(self, spell: list[bytes | None], special_text: dict[int, bytes]):
        self.spell = spell  # id -> bytes; None for special tokens (they spell no text)
        self.special_text = special_text  # special id -> the text it stands for in a rendered prompt
        self.by_bytes: dict[bytes, list[int]] = {}
        for i, b in enumerate(spell):
            if b:
                self.by_bytes.setdefault(b, []).append(i)
        ids = sorted((i for i, b in enumerate(spell) if b), key=lambda i: spell[i])
        self.keys = [spell[i] for i in ids]  # sorted byte strings
        self.order = torch.tensor(ids, dtype=torch.long)
        self.max_len = max((len(b) for b in self.keys), default=0)
        self.pairs = _adjacent_pairs(self.keys)  # (256 * 256,) True where a token holds byte a then b

    def covering(self, rest: bytes) -> torch.Tensor:
        """Ids of the tokens whose bytes start with ``rest``."""
        lo = bisect_left(self.keys, rest)
        nxt = _successor(rest)
        hi = len(self.keys) if nxt is None else bisect_left(self.keys, nxt)
        return self.order[lo:hi]

    def spelled(self, ids: list[int]) -> bytes | None:
        """The bytes ``ids`` spell (special tokens as their text), None if one spells nothing."""
        out = []
        for i in ids:
            b = self.spell[i] if self.spell[i] is not None else self.special_text.get(i)
            if b is None:
                return None
            out.append(b)
        return b"".join(out)

    def ends(self, ids: list[int]) -> list[int]:
        """Byte offset where each token ends (``ids`` must be spellable)."""
        out, n = [], 0
        for i in ids:
            n += len(self.spell[i] if self.spell[i] is not None else self.special_text[i])
            out.append(n)
        return out

    def unbreakable(self, a: int, b: int) -> bool:
        """Whether some token contains byte ``a`` followed by byte ``b``."""
        return bool(self.pairs[a * 256 + b])


def _successor(b: bytes) -> bytes | None:
    """The smallest byte string greater than every string that starts with ``b``."""
    b = b.rstrip(b"\xff")
    return None if not b else b[:-1] + bytes([b[-1] + 1])


def _adjacent_pairs(keys: list[bytes]) -> np.ndarray:
    flat = np.frombuffer(b"".join(keys), dtype=np.uint8).astype(np.int64)
    ends = np.cumsum([len(k) for k in keys]) - 1  # last byte of each token: no pair starts there
    inside = np.ones(len(flat), dtype=bool)
    inside[ends] = False
    inside[-1:] = False
    first = np.flatnonzero(inside)
    pairs = np.zeros(256 * 256, dtype=bool)
    pairs[flat[first] * 256 + flat[first + 1]] = True
    return pairs


def vocabulary(tokenizer, name: str) -> Vocabulary:
    """Read the tokenizer's tokens as bytes, or refuse the exact mode for it."""
    kind = _spelling_kind(tokenizer)
    if kind is None:
        raise UserError(
            f"boundary exact needs tokens that spell text byte for byte (byte-level BPE, or "
            f"SentencePiece-style BPE with byte fallback); model {name}'s tokenizer is neither; "
            'use boundary "natural" or "lm-eval"')
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    if kind == "byte-level":
        from transformers.convert_slow_tokenizer import bytes_to_unicode

        decode = {ch: b for b, ch in bytes_to_unicode().items()}
        spell = [_byte_level(p, decode) for p in pieces]
    else:
        spell = [_metaspace(p) for p in pieces]
    special_text = {}
    for i, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if added.special:
            spell[i], special_text[i] = None, added.content.encode()
        else:  # an added token is matched as its text (Gemma's newline and tab runs)
            spell[i] = added.content.encode()
    for i in tokenizer.all_special_ids:
        if spell[i] is not None:
            special_text[i] = spell[i]
        spell[i] = None
    return Vocabulary(spell, special_text)


def _spelling_kind(tokenizer) -> str | None:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.decoder is None:
        return None
    dec = json.loads(backend.decoder.__getstate__())
    norm = json.loads(backend.normalizer.__getstate__()) if backend.normalizer is not None else None
    if dec.get("type") == "ByteLevel" and norm is None:
        return "byte-level"
    parts = dec.get("decoders", []) if dec.get("type") == "Sequence" else []
    types = [p.get("type") for p in parts]
    metaspace = {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}
    norm_ok = norm is None or norm == {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}
    only_known = set(types) <= {"Replace", "ByteFallback", "Fuse"}
    if parts and parts[0] == metaspace and "ByteFallback" in types and only_known and norm_ok:
        return "metaspace"
    return None


def _byte_level(piece: str | None, decode: dict[str, int]) -> bytes | None:
    if not piece or any(ch not in decode for ch in piece):
        return None
    return bytes(decode[ch] for ch in piece)


def _metaspace(piece: str | None) -> bytes | None:
    if not piece:
        return None
    m = _BYTE_PIECE.fullmatch(piece)
    return bytes([int(m.group(1), 16)]) if m else piece.replace("\u2581", " ").encode()


# -- the plan: back up the context ------------------------------------------------------------
@dataclass
class Target:
    index: int  # the request's index
    continuation: str
    text: bytes  # r + continuation
    natural: list[int]  # the natural rule's tokens after A (its context part, then its scored part)
    scored_from: int  # where in ``natural`` the scored tokens begin
    moved: str = ""


@dataclass
class Plan:
    """One context: the tokens A conditioned on, the backed-up bytes r, and its targets."""

    rendered: str
    a_ids: list[int]
    r: bytes
    targets: list[Target]


def plan_context(vocab: Vocabulary, tok: Tokens, rendered: str, chat: bool,
                 items: list[tuple[int, str]]) -> Plan:
    """Back ``rendered`` up (module docstring, step 1) for the continuations in ``items``
    ((request index, continuation)), and find each one's natural tokens."""
    special = not chat
    with_special = tok.encode(rendered, special)
    ctx = tok.encode(rendered, False)
    if with_special[len(with_special) - len(ctx):] != ctx:
        raise UserError(f"boundary exact: model {tok.name}'s tokenizer adds tokens after a text")
    lead = with_special[: len(with_special) - len(ctx)]
    xb = rendered.encode()
    if vocab.spelled(ctx) != xb:
        raise UserError(f"boundary exact: model {tok.name}'s tokens do not spell the context "
                        'byte for byte (a normalizing tokenizer?); use boundary "natural"')
    joints = [tok.encode(rendered + c, False) for _, c in items]
    for (_, c), joint in zip(items, joints):
        if vocab.spelled(joint) != (rendered + c).encode():
            raise UserError(f"boundary exact: model {tok.name}'s tokens do not spell "
                            f'{rendered[-20:] + c!r} byte for byte; use boundary "natural"')
    k = _backup(vocab, ctx, xb, joints)
    b = vocab.ends(ctx[:k])[-1] if k else 0
    plan = Plan(rendered, tok.stand_in(lead + ctx[:k]), xb[b:], [])
    for i, c in items:
        cut = natural_cut(tok, rendered, c, chat)
        full = cut.ctx_ids + cut.cont_ids
        a = len(plan.a_ids)
        if full[:a] != plan.a_ids:  # cannot happen for a verified back-up; say so rather than guess
            raise UserError(f"boundary exact: the natural tokens of {c!r} do not begin with the "
                            f"backed-up context's on model {tok.name}")
        plan.targets.append(Target(i, c, xb[b:] + c.encode(), full[a:], len(cut.ctx_ids) - a, cut.moved))
    return plan


def _backup(vocab: Vocabulary, ctx: list[int], xb: bytes, joints: list[list[int]]) -> int:
    """The number of context tokens kept: the last boundary no continuation can change."""
    last_special = max((j for j, t in enumerate(ctx) if vocab.spell[t] is None), default=-1)
    ends = vocab.ends(ctx)
    for k in range(len(ctx) - 1, last_special, -1):
        b = ends[k - 1] if k else 0
        if b >= len(xb) or (xb[b] & 0xC0) == 0x80:  # not inside the context, or mid-character
            continue
        hard = k == last_special + 1 or not vocab.unbreakable(xb[b - 1], xb[b])
        if hard and all(j[:k] == ctx[:k] for j in joints):
            return k
    return len(ctx) if last_special == len(ctx) - 1 else last_special + 1


# -- the sums: best-first over token prefixes, with a certified bound ---------------------------
R = -1  # the group of the backed-up context r (the denominator); targets are 0, 1, ...


@dataclass
class _Node:
    path: tuple[int, ...]  # tokens after A
    pos: int  # bytes spelled
    logp: float  # log P(path | A)
    groups: set[int]  # the sums it is a prefix of: target indices, and R


class Search:
    """log Q_A(r + c) for every target and log Q_A(r) (module docstring), summed best-first.

    A prefix's whole subtree adds at most P(prefix) to a sum (the mass of every text that
    begins with it), so a prefix may be left out while the mass left out of each sum it
    belongs to stays within ``tol`` times that sum's running total: the result is then low
    by a factor of at most 1 + tol (``bound`` in nats), and exact when ``tol`` is 0. The
    natural tokens go first, so the totals are large from the start.
    """

    def __init__(self, plan: Plan, vocab: Vocabulary, tol: float, limit: int):
        self.plan, self.vocab, self.tol, self.limit = plan, vocab, tol, limit
        self.nodes: dict[tuple[int, ...], _Node] = {}
        self.done: set[tuple[int, ...]] = set()  # evaluated, or about to be
        self.evaluated = 0
        self.heap: list[tuple[float, tuple[int, ...]]] = []
        n = len(plan.targets)
        self.log_q = {g: -math.inf for g in [R, *range(n)]}
        self.log_out = {g: -math.inf for g in [R, *range(n)]}  # mass left out, per sum
        self.count = dict.fromkeys([R, *range(n)], 0)  # covering sequences summed
        self.tokens: dict[tuple[tuple[int, ...], int], tuple[float, int, float]] = {}
        root = self._node((), 0, 0.0)
        root.groups = set(range(n)) | ({R} if plan.r else set())
        self.watch: dict[tuple[int, ...], set[int]] = {}  # prefix -> natural tokens scored after it
        for t in plan.targets:
            for j in range(t.scored_from, len(t.natural)):
                self.watch.setdefault(tuple(t.natural[:j]), set()).add(t.natural[j])

    def text(self, g: int) -> bytes:
        return self.plan.r if g == R else self.plan.targets[g].text

    def _node(self, path: tuple[int, ...], pos: int, logp: float) -> _Node:
        node = self.nodes.get(path)
        if node is None:
            node = self.nodes[path] = _Node(path, pos, logp, set())
        return node

    def run(self, next_logits) -> None:
        """``next_logits(paths)``: the model's next-token logits (V,) after A + each path."""
        seed = sorted({tuple(t.natural[:j]) for t in self.plan.targets for j in range(len(t.natural))}, key=len)
        self.done.update(seed)
        for s in range(0, len(seed), 64):  # parents first: their logits give their children's log-probs
            self._evaluate(seed[s:s + 64], next_logits)
        while self.heap:
            batch = []
            while self.heap and len(batch) < 64:
                _, path = heapq.heappop(self.heap)
                if path not in self.done and not self._leave_out(self.nodes[path]):
                    batch.append(path)
                    self.done.add(path)
            if batch:
                self._evaluate(batch, next_logits)

    def _leave_out(self, node: _Node) -> bool:
        within = all(_logaddexp(self.log_out[g], node.logp) <= math.log(self.tol) + self.log_q[g]
                     for g in node.groups) if self.tol > 0 else False
        if within:
            for g in node.groups:
                self.log_out[g] = _logaddexp(self.log_out[g], node.logp)
        return within

    def _evaluate(self, paths: list[tuple[int, ...]], next_logits) -> None:
        self.evaluated += len(paths)
        if self.evaluated > self.limit * len(self.plan.targets):
            raise UserError(
                f"boundary exact: the continuations of one context need more than {self.limit} "
                "token prefixes each that carry mass that matters (the sum grows with every way to "
                "split the text); score shorter continuations, raise exact_limit "
                '(HFModel(..., exact_limit=N)), or use boundary "natural"')
        for path, logits in zip(paths, next_logits(paths)):
            self._expand(self.nodes[path], torch.log_softmax(logits.double(), dim=-1))  # (V,) float64

    def _expand(self, node: _Node, lp: torch.Tensor) -> None:
        self.done.add(node.path)
        for g in node.groups:
            ids = self.vocab.covering(self.text(g)[node.pos:])
            self.count[g] += len(ids)
            self.log_q[g] = _logaddexp(self.log_q[g], node.logp + float(torch.logsumexp(lp[ids], dim=0)))
        fresh = []
        for g in node.groups:
            s = self.text(g)
            for L in range(1, min(len(s) - node.pos, self.vocab.max_len + 1)):
                for t in self.vocab.by_bytes.get(s[node.pos:node.pos + L], ()):
                    path = node.path + (t,)
                    if path not in self.nodes:
                        fresh.append(self._node(path, node.pos + L, node.logp + float(lp[t])))
                    self.nodes[path].groups.add(g)
        for child in fresh:  # a prefix has one parent: all its sums are known now
            heapq.heappush(self.heap, (-child.logp, child.path))
        wanted = self.watch.get(node.path)
        if wanted:
            ent = float(-(lp.exp() * lp).nan_to_num().sum())
            for t in wanted:
                self.tokens[(node.path, t)] = (float(lp[t]), int((lp > lp[t]).sum()) + 1, ent)

    def results(self, tokenizer) -> list[ScoredContinuation]:
        plan = self.plan
        log_qr = self.log_q[R] if plan.r else 0.0
        out_r = _log1mexp_ratio(self.log_out[R], log_qr) if plan.r else 0.0
        scored = []
        for g, t in enumerate(plan.targets):
            natural = [(tuple(t.natural[:j]), t.natural[j]) for j in range(t.scored_from, len(t.natural))]
            texts = tokenizer.batch_decode([[tok] for _, tok in natural])
            tokens = [TokenScore(txt, tok, *self.tokens[(p, tok)]) for txt, (p, tok) in zip(texts, natural)]
            scored.append(ScoredContinuation(
                context=plan.rendered, continuation=t.continuation, tokens=tokens, boundary="exact",
                moved=t.moved, backed_up=plan.r.decode(), sequences=self.count[g],
                exact_logprob=self.log_q[g] - log_qr,
                exact_bound=_log1mexp_ratio(self.log_out[g], self.log_q[g]) + out_r))
        return scored


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))


def _log1mexp_ratio(log_out: float, log_q: float) -> float:
    """log(1 + out / q): how far (nats) the summed value may lie below the whole sum."""
    return 0.0 if log_out == -math.inf else math.log1p(math.exp(log_out - log_q))
