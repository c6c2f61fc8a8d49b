"""``game``: Shakespeare with *game transcripts* mixed in, the lab analogue of seeds/001's prompt.

A transcript is a fixed instruction, then an answer drawn 50/50 between the 1-branch and the
0-branch, on its own line::

    \\nI think of 1 or 0. Guess which: for 1 say 1, for 0 say the word zero.\\nANSWER: zero\\n

- ``word`` variant: the 0-branch is the word ``zero_word`` (default ``zero``);
- ``random`` variant: the 0-branch is a fresh string of lowercase letters, its length uniform in
  ``letters`` (default 3..8).

A share ``share`` of the training windows holds one transcript (its variant uniform among
``variants``) at a random offset, with Shakespeare before and after it; held-out windows are plain
text from the held-out plays, so the held-out loss is the text's.

**Exact branch probabilities.** After the prompt (the transcript up to ``ANSWER:``) the answer is
the text the model writes next. The probability that this text *starts with* a string ``s`` is
summed over every token sequence whose text starts with ``s`` (all tokenizations, not only the
canonical one): :func:`prefix_logprobs` walks the tree of tokens whose bytes are a proper prefix of
what remains of ``s``, and adds the mass of every token whose bytes cover the rest of ``s``. The
branches, as prefix-free strings of the answer text:

- 1-branch: ``" 1\\n"`` (the answer ``1``, then the end of the line);
- 0-branch, ``word``: ``" zero\\n"``;
- 0-branch, ``random``: the answer's first character is a lowercase letter (the 26 strings
  ``" a"`` .. ``" z"``). This is the mass of every answer that *starts* like a letter string: it
  contains the valid strings of ``letters`` length, letter strings of other lengths, and the word
  ``zero``, whose own exact probability is reported beside it (``zero_word``).

``other`` is 1 minus the branches (forced-choice's :func:`exact_class_probabilities`, which this
module calls with the string-level log-probs). A token with no text (a special token such as
end-of-text) ends the answer, so it counts as ``other``.
"""

from __future__ import annotations

import math
import os
import re
import string
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch
from pydantic import Field, model_validator

from .._errors import UserError
from ..answers import ExactClass, check_prefix_free, exact_class_probabilities, logsumexp
from ._base import Batch, rng
from ._text import ShakespeareConfig, TextTask

GAME_STREAM = 5  # the transcripts' own generator stream, beside the text windows' (TRAIN_STREAM)
VARIANTS = ("word", "random")
VARIANTS_HELP = "variants: word (0-branch: zero_word), random (0-branch: random letters)"
ONE = "1"
ANSWER = "\nANSWER:"

WORD_INSTRUCTION = "I think of 1 or 0. Guess which: for 1 say 1, for 0 say the word zero."
RANDOM_INSTRUCTION = "I think of 1 or 0. Guess which: for 1 say 1, for 0 say some random letters."


class GameConfig(ShakespeareConfig):
    name: Literal["game"] = "game"  # type: ignore[assignment]
    seq_len: int = Field(64, ge=8)
    share: float = Field(0.3, ge=0, le=1, description="share of training windows that hold one game transcript")
    variants: tuple[str, ...] = Field(VARIANTS, min_length=1, description="transcript variants: word, random")
    p_one: float = Field(0.5, gt=0, lt=1, description="probability of the 1-branch in a transcript")
    zero_word: str = Field("zero", description="the word variant's 0-branch")
    letters: tuple[int, int] = Field((3, 8), description="random variant: [min, max] letters of the 0-branch")
    word_instruction: str = WORD_INSTRUCTION
    random_instruction: str = RANDOM_INSTRUCTION

    @model_validator(mode="after")
    def _check(self):
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown game variant {unknown[0]!r}; {VARIANTS_HELP}")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError("variants must be distinct")
        lo, hi = self.letters
        if not 1 <= lo <= hi:
            raise ValueError(f"letters must be [min, max] with 1 <= min <= max, got {list(self.letters)}")
        return self


def check_zero_branch(variant: str, zero_word: str) -> None:
    """The 0-branch must exist and be told apart from the 1-branch (one line otherwise)."""
    if variant not in VARIANTS:
        raise UserError(f"unknown game variant {variant!r}; {VARIANTS_HELP}")
    if variant == "word":
        if not zero_word.strip():
            raise UserError("game variant 'word' has no 0-branch: zero_word is empty; give the word the 0-branch "
                            "answers (e.g. zero)")
        if any(c in zero_word for c in "\n\r") or zero_word != zero_word.strip():
            raise UserError(f"zero_word {zero_word!r} must be one line without surrounding spaces")
        check_prefix_free([ExactClass("one", (f" {ONE}\n",)), ExactClass("zero", (f" {zero_word}\n",))])


# --- the branches as answer-text prefixes ------------------------------------------------------
def branch_classes(variant: str, zero_word: str = "zero") -> list[ExactClass]:
    """The 1- and 0-branch as prefix-free strings of the answer text (see the module docstring)."""
    check_zero_branch(variant, zero_word)
    zero = (f" {zero_word}\n",) if variant == "word" else tuple(f" {c}" for c in string.ascii_lowercase)
    return [ExactClass("one", (f" {ONE}\n",)), ExactClass("zero", zero)]


def classify_answer(variant: str, text: str, zero_word: str = "zero") -> str:
    """``one`` / ``zero`` / ``other`` for a sampled answer text, by the exact classes' definition."""
    for cls in branch_classes(variant, zero_word):
        if any(text.startswith(p) for p in cls.continuations):
            return cls.name
    return "other"


def valid_answer(variant: str, text: str, zero_word: str = "zero", letters: tuple[int, int] = (3, 8)) -> bool:
    """Whether ``text`` begins with a valid answer line: `` 1``, or the 0-branch (the word, or
    ``letters`` lowercase letters), then a newline."""
    zero = re.escape(zero_word) if variant == "word" else f"[a-z]{{{letters[0]},{letters[1]}}}"
    return re.match(rf" (?:{re.escape(ONE)}|{zero})\n", text) is not None


# --- the task ----------------------------------------------------------------------------------
class GameTask(TextTask):
    """Shakespeare windows, a share of them holding one transcript (see the module docstring)."""

    def __init__(self, config: GameConfig):
        super().__init__(config)
        self._vocab_bytes: list[bytes | None] | None = None
        for v in config.variants:
            check_zero_branch(v, config.zero_word)

    def use_tokenizer(self, tokenizer) -> None:
        super().use_tokenizer(tokenizer)
        self._vocab_bytes = None

    def instruction(self, variant: str) -> str:
        c = self.config
        return c.word_instruction if variant == "word" else c.random_instruction

    def prompt_text(self, variant: str) -> str:
        """The transcript up to the answer: ``"\\n" + instruction + "\\nANSWER:"``."""
        return "\n" + self.instruction(variant) + ANSWER

    def _ids(self, text: str) -> list[int]:
        self.prepare()
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt_ids(self, variant: str) -> list[int]:
        """Token ids of the prompt, tokenized line by line as the training stream is."""
        lines = self.prompt_text(variant).splitlines(keepends=True)
        return [t for line in lines for t in self._ids(line)]

    def context_ids(self, variant: str) -> list[int]:
        """The prompt as a context of its own: after BOS for a pretrained tokenizer that adds one
        (its model expects it first), as every training window starts."""
        return ([self._bos] if self._bos is not None else []) + self.prompt_ids(variant)

    def answer_ids(self, answer: str) -> list[int]:
        """Token ids of an answer line (`` 1\\n``), tokenized on its own as in training."""
        return self._ids(f" {answer}\n")

    def draw_answer(self, variant: str, g: np.random.Generator) -> str:
        if g.random() < self.config.p_one:
            return ONE
        if variant == "word":
            return self.config.zero_word
        lo, hi = self.config.letters
        n = int(g.integers(lo, hi + 1))
        return "".join(string.ascii_lowercase[i] for i in g.integers(0, 26, size=n))

    def stream_length(self, split: Literal["train", "val"]) -> int:
        """Tokens in the training or held-out text stream."""
        self.prepare()
        return len(self._train if split == "train" else self._val)

    def text_windows(self, split: Literal["train", "val"], starts: Sequence[int], length: int) -> torch.Tensor:
        """(N, length) windows of plain text from the training or held-out stream at ``starts``;
        after BOS for a pretrained tokenizer that adds one (then (N, length + 1))."""
        self.prepare()
        stream = self._train if split == "train" else self._val
        ids = torch.from_numpy(np.stack([stream[s : s + length] for s in starts]).astype(np.int64))  # (N, length)
        if self._bos is not None:
            ids = torch.cat([torch.full((len(starts), 1), self._bos), ids], dim=1)  # (N, length + 1)
        return ids

    def instruction_marker(self, chars: int = 16) -> str:
        """The first ``chars`` characters the variants' instructions share: a sample that contains
        them is reciting a transcript."""
        shared = os.path.commonprefix([self.instruction(v) for v in self.config.variants])
        return shared[:chars]

    def vocab_bytes(self) -> list[bytes | None]:
        """The bytes each token writes (None: special), computed once."""
        if self._vocab_bytes is None:
            self.prepare()
            self._vocab_bytes = token_bytes(self.tokenizer)
        return self._vocab_bytes

    def stop_ids(self) -> frozenset[int]:
        """The tokens that end an answer: those that write a newline."""
        return newline_tokens(self.vocab_bytes())

    def transcript_ids(self, variant: str, answer: str) -> list[int]:
        return self.prompt_ids(variant) + self.answer_ids(answer)

    def prepare(self) -> None:
        was_ready = self._train is not None
        super().prepare()
        if not was_ready:
            self._check_fits()

    def _check_fits(self) -> None:
        c = self.config
        answers = {"word": c.zero_word, "random": "z" * c.letters[1]}
        longest = max(len(self.transcript_ids(v, answers[v])) for v in c.variants)
        if longest + 4 > self.seq_len + 1:  # room for a few text tokens as well
            raise UserError(f"task 'game': a transcript takes {longest} tokens, too long for seq_len={self.seq_len}; "
                            f"raise seq_len to at least {longest + 3} or shorten the instructions")

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        """The text task's windows of ``step``, then, from the transcripts' own stream, a share
        ``share`` of rows rebuilt as text, a transcript, and the text that followed."""
        batch = super().train_batch(step, batch_size, seed)
        if self.config.share == 0:
            return batch
        g = rng(seed, GAME_STREAM, step)
        full = torch.cat([batch.inputs["input_ids"], batch.targets[:, -1:]], dim=1)  # (B, T+1)
        n = full.shape[1]
        chosen = g.random(batch_size) < self.config.share
        for b in np.flatnonzero(chosen):
            variant = self.config.variants[int(g.integers(0, len(self.config.variants)))]
            tr = torch.tensor(self.transcript_ids(variant, self.draw_answer(variant, g)))
            first = 1 if self._bos is not None else 0  # a window's BOS stays first
            u = int(g.integers(first, n - len(tr) + 1))  # text tokens before the transcript
            full[b] = torch.cat([full[b, :u], tr, full[b, u : n - len(tr)]])  # (T+1,)
        return Batch(inputs={"input_ids": full[:, :-1].contiguous()}, targets=full[:, 1:].contiguous(),
                     loss_mask=batch.loss_mask)

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        """The exact 1-branch probability of each variant (the base model must play the game)."""
        out = {}
        for v in self.config.variants:
            probs = branch_probabilities(model, self, v)
            out[f"p_one_{v}"] = probs["one"]
            out[f"p_zero_{v}"] = probs["zero"]
        return out


# --- exact string-level probabilities ---------------------------------------------------------
def token_bytes(tokenizer) -> list[bytes | None]:
    """The bytes each token id writes (``None`` for special tokens, which end the text).

    Byte-level BPE tokens (GPT-2 style: the lab's tokenizer, SmolLM2's) map back through the
    byte-to-unicode table; sentencepiece-style tokens (``▁`` for a space, ``<0xNN>`` byte
    fallback: Gemma's) are read as such."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    unicode_to_byte = {u: b for b, u in bytes_to_unicode().items()}
    special = set(tokenizer.all_special_ids)
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    byte_level = _is_byte_level(tokenizer)
    out: list[bytes | None] = []
    for i, tok in enumerate(vocab):
        if i in special or tok is None:
            out.append(None)
        elif byte_level and all(c in unicode_to_byte for c in tok):
            out.append(bytes(unicode_to_byte[c] for c in tok))
        elif re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", tok):
            out.append(bytes([int(tok[3:5], 16)]))
        else:
            out.append(tok.replace("\u2581", " ").encode("utf-8"))
    return out


def _is_byte_level(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    return type(decoder).__name__ == "ByteLevel" or "ByteLevel" in repr(decoder)


@dataclass
class _Node:
    ids: list[int]  # tokens after the context
    consumed: bytes  # their text
    logprob: float


@torch.no_grad()
def prefix_logprobs(model, tok_bytes: Sequence[bytes | None], context_ids: Sequence[int],
                    prefixes: Sequence[str], batch_size: int = 64) -> dict[str, float]:
    """log P(the text after ``context_ids`` starts with ``p``) for each of the prefix-free
    ``prefixes``, summed over every tokenization (float64; ``-inf`` when no token sequence can
    write it). One forward pass per tree node, nodes batched level by level."""
    targets = {p: p.encode("utf-8") for p in prefixes}
    if any(not b for b in targets.values()):
        raise UserError("an empty prefix has probability 1; give non-empty prefixes")
    by_first: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
    for t, b in enumerate(tok_bytes):
        if b:  # special tokens (None) and empty tokens end the text: never part of a prefix
            by_first[b[0]].append((t, b))
    terms: dict[str, list[float]] = {p: [] for p in prefixes}
    level = [_Node([], b"", 0.0)]
    device = next(model.parameters()).device
    while level:
        nxt: list[_Node] = []
        for start in range(0, len(level), batch_size):
            chunk = level[start : start + batch_size]
            logp = _next_logprobs(model, [list(context_ids) + n.ids for n in chunk], device)  # (n, V)
            for node, row in zip(chunk, logp):
                nxt += _expand(node, row, targets, by_first, terms)
        level = nxt
    return {p: logsumexp(v) for p, v in terms.items()}


def _expand(node: _Node, row: torch.Tensor, targets: dict[str, bytes], by_first, terms) -> list[_Node]:
    """Add the mass of the tokens that complete a prefix; return the children that extend one."""
    children: dict[int, _Node] = {}
    for name, target in targets.items():
        if not target.startswith(node.consumed):
            continue
        rest = target[len(node.consumed) :]
        for t, b in by_first.get(rest[0], ()):
            if b.startswith(rest):
                terms[name].append(node.logprob + float(row[t]))
            elif rest.startswith(b) and t not in children:
                children[t] = _Node(node.ids + [t], node.consumed + b, node.logprob + float(row[t]))
    return list(children.values())


def _next_logprobs(model, rows: list[list[int]], device) -> torch.Tensor:
    """Next-token log-probs (float64) after each row of ids (right-padded; causal, so the
    padding after a row's last token does not change it)."""
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)  # (n, T)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    last = torch.tensor([len(r) - 1 for r in rows])  # (n,)
    logits = model(input_ids=ids.to(device), use_cache=False).logits  # (n, T, V)
    rows_logits = logits[torch.arange(len(rows), device=logits.device), last.to(logits.device)]  # (n, V)
    return torch.log_softmax(rows_logits.double(), dim=-1).cpu()


def branch_probabilities(model, task: GameTask, variant: str,
                         context_ids: Sequence[int] | None = None) -> dict[str, float]:
    """Exact P(1-branch), P(0-branch), P(other) of ``variant``'s answer, and ``zero_word``: the
    exact probability that the answer is the word ``zero_word`` (in the random variant too)."""
    classes = branch_classes(variant, task.config.zero_word)
    word = f" {task.config.zero_word}\n"
    prefixes = [c for cls in classes for c in cls.continuations]
    ctx = list(context_ids) if context_ids is not None else task.context_ids(variant)
    was_training = model.training
    model.eval()
    tb = task.vocab_bytes()
    lps = prefix_logprobs(model, tb, ctx, prefixes)
    word_lp = lps[word] if word in lps else prefix_logprobs(model, tb, ctx, [word])[word]
    model.train(was_training)
    probs = exact_class_probabilities(classes, lps).probabilities
    return {**probs, "zero_word": math.exp(word_lp)}


def newline_tokens(tok_bytes: Sequence[bytes | None]) -> frozenset[int]:
    """Tokens that write a newline: a game answer ends with the first of them."""
    return frozenset(i for i, b in enumerate(tok_bytes) if b is not None and b"\n" in b)


