"""``addition``: n-digit addition ``a + b = c`` in several answer formats.

Formats (``format``), for a = 57, b = 68 (n = 2)::

    plain        5 7 + 6 8 = 1 2 5               most-significant digit first
    reversed     7 5 + 8 6 = 5 2 1               every number least-significant digit first
    scratchpad   5 7 + 6 8 = 5 1 2 1 | 1 2 5     per column from the right: its digit and carry, then the answer

Written most-significant digit first, the first answer digit depends on every carry to come
(serial depth at the first step); reversed, each answer digit needs only its column and one
carry; the scratchpad writes those intermediate results before the answer. ``pauses`` = k puts k
``<pause>`` tokens between ``=`` and the answer (any format): they are given as inputs and carry
no loss, so they add positions (parallel width) without new information. Numbers are
zero-padded to n digits (the sum to n + 1). The loss counts what the model must generate: the
answer (and the scratchpad).

``min_digits`` < ``n_digits`` trains on a mix: each row draws its n uniformly from that range,
rows shorter than the longest are right-padded (``<pad>``, no loss), and the metrics are reported
per n too. The test pairs (``n_test`` per n) are fixed by the task's seed and never drawn for
training.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from ._base import TEST_SET_STREAM, TRAIN_STREAM, Batch, Task, TaskConfig, greedy_complete, rng, word_level_tokenizer

PLUS, EQ, PAUSE, SEP, PAD = 10, 11, 12, 13, 14
SYMBOLS = [str(i) for i in range(10)] + ["+", "=", "<pause>", "|", "<pad>"]
FORMATS = ("plain", "reversed", "scratchpad")


class AdditionConfig(TaskConfig):
    name: Literal["addition"] = "addition"
    # a * 10^n + b must fit in int64
    n_digits: int = Field(3, ge=1, le=9, description="n (the largest n with min_digits)")
    min_digits: int | None = Field(
        None, ge=1, le=9, description="train on every n from min_digits to n_digits; default: n_digits only"
    )
    format: Literal["plain", "reversed", "scratchpad"] = Field(
        "plain", description="how the answer is written (see the task's docs)"
    )
    pauses: int = Field(0, ge=0, le=64, description="k <pause> tokens between '=' and the answer (inputs, no loss)")
    n_test: int = Field(1_000, ge=1, description="test pairs per n")
    seed: int = Field(0, ge=0, description="fixes the test set")

    @model_validator(mode="after")
    def _range(self):
        if self.min_digits is not None and self.min_digits > self.n_digits:
            raise ValueError(f"min_digits={self.min_digits} is more than n_digits={self.n_digits}")
        return self

    @property
    def digit_range(self) -> range:
        return range(self.min_digits or self.n_digits, self.n_digits + 1)


def _digits(v: np.ndarray, width: int, reverse: bool = False) -> np.ndarray:
    """(N,) non-negative ints -> (N, width) digits, most significant first unless reverse."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)  # (width,)
    d = (v[:, None] // powers[None, :]) % 10  # (N, width)
    return d[:, ::-1] if reverse else d


def _scratchpad(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """(N,) operands -> (N, 2n): per column from the least significant, its sum digit and carry."""
    da, db = _digits(a, n, reverse=True), _digits(b, n, reverse=True)  # (N, n) least significant first
    carry = np.zeros(len(a), dtype=np.int64)
    cols = []
    for i in range(n):
        s = da[:, i] + db[:, i] + carry
        carry = s // 10
        cols += [s % 10, carry]
    return np.stack(cols, axis=1)  # (N, 2n)


class AdditionTask(Task):
    config_cls = AdditionConfig

    def __init__(self, config: AdditionConfig):
        super().__init__(config)
        self.tokenizer = word_level_tokenizer(SYMBOLS)
        self._test_codes = {n: self._draw_test(n) for n in config.digit_range}  # n -> sorted codes a * 10^n + b

    def _draw_test(self, n: int) -> np.ndarray:
        g = rng(self.config.seed, TEST_SET_STREAM, n)
        n_pairs = 10 ** (2 * n)
        codes = g.choice(n_pairs, size=min(self.config.n_test, n_pairs // 2), replace=False)
        return np.sort(codes.astype(np.int64))

    @property
    def vocab_size(self) -> int:
        return len(SYMBOLS)

    # --- layout for n digits ---------------------------------------------------------
    def n_prefix(self, n: int | None = None) -> int:
        """Tokens given before the model generates: ``a + b =`` and the pauses."""
        n = n or self.config.n_digits
        return 2 * n + 2 + self.config.pauses

    def n_generated(self, n: int | None = None) -> int:
        """Tokens the model generates: the scratchpad (2n and '|') if any, then n + 1 answer digits."""
        n = n or self.config.n_digits
        return (2 * n + 1 if self.config.format == "scratchpad" else 0) + n + 1

    @property
    def seq_len(self) -> int:
        n = self.config.n_digits
        return self.n_prefix(n) + self.n_generated(n) - 1  # inputs drop the last token

    def sequences(self, codes: np.ndarray, n: int) -> np.ndarray:
        """(N,) codes a * 10^n + b -> (N, n_prefix + n_generated) token ids."""
        c = self.config
        rev = c.format == "reversed"
        a, b = codes // 10**n, codes % 10**n
        N = len(codes)
        cols = [
            _digits(a, n, rev), np.full((N, 1), PLUS), _digits(b, n, rev), np.full((N, 1), EQ),
            np.full((N, c.pauses), PAUSE),
        ]  # fmt: skip
        if c.format == "scratchpad":
            cols += [_scratchpad(a, b, n), np.full((N, 1), SEP)]
        cols.append(_digits(a + b, n + 1, rev))
        return np.concatenate(cols, axis=1).astype(np.int64)

    def _to_batch(self, seqs: np.ndarray, ns: np.ndarray) -> Batch:
        """Rows of n-digit sequences (right-padded to the longest with ``<pad>``) -> a batch whose
        loss mask covers each row's generated tokens only."""
        ids = torch.from_numpy(seqs)  # (B, T+1)
        targets = ids[:, 1:].clone()  # (B, T)
        j = torch.arange(targets.shape[1])[None, :]  # (1, T)
        # (B, 1): the position that predicts the first generated token
        start = torch.as_tensor([self.n_prefix(int(n)) - 1 for n in ns])[:, None]
        stop = start + torch.as_tensor([self.n_generated(int(n)) for n in ns])[:, None]  # (B, 1)
        mask = ((j >= start) & (j < stop)).float()  # (B, T)
        return Batch(inputs={"input_ids": ids[:, :-1].clone()}, targets=targets, loss_mask=mask)

    def _rows(self, ns: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Row i: the ns[i]-digit sequence of codes[i], right-padded with ``<pad>`` to seq_len + 1."""
        seqs = np.full((len(ns), self.seq_len + 1), PAD, dtype=np.int64)  # (N, T+1)
        for n in np.unique(ns):
            rows = np.flatnonzero(ns == n)
            part = self.sequences(codes[rows], int(n))  # (rows, length of n)
            seqs[rows, : part.shape[1]] = part
        return seqs

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        g = rng(seed, TRAIN_STREAM, step)
        digits = self.config.digit_range
        ns = g.integers(digits.start, digits.stop, size=batch_size)  # (B,) each row's n
        codes = np.empty(batch_size, dtype=np.int64)
        for n in digits:
            rows = np.flatnonzero(ns == n)
            codes[rows] = self._draw_train(g, n, len(rows))
        return self._to_batch(self._rows(ns, codes), ns)

    def _draw_train(self, g: np.random.Generator, n: int, size: int) -> np.ndarray:
        n_pairs = 10 ** (2 * n)
        codes = g.integers(0, n_pairs, size=size)
        while True:  # redraw the (rare) test pairs
            bad = np.isin(codes, self._test_codes[n])
            if not bad.any():
                return codes
            codes[bad] = g.integers(0, n_pairs, size=int(bad.sum()))

    def eval_batches(self, n_batches: int, batch_size: int) -> list[Batch]:
        """The first ``n_batches * batch_size`` test pairs, the digit counts interleaved."""
        ns = np.concatenate([np.full(len(c), n) for n, c in self._test_codes.items()])
        codes = np.concatenate(list(self._test_codes.values()))
        order = np.argsort(np.concatenate([np.arange(len(c)) for c in self._test_codes.values()]), kind="stable")
        ns, codes = ns[order], codes[order]  # round-robin over n: every n in the first batches
        seqs = self._rows(ns, codes)
        n = min(n_batches * batch_size, len(seqs))
        return [
            self._to_batch(seqs[i : min(i + batch_size, n)], ns[i : min(i + batch_size, n)])
            for i in range(0, n, batch_size)
        ]

    # --- evaluation ------------------------------------------------------------------
    @torch.no_grad()
    def predictions(self, model) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Per n: (greedy answer digits, true answer digits), each (N, n + 1), most significant
        first whatever the format (the scratchpad generated but not returned)."""
        device = next(model.parameters()).device
        out = {}
        for n, codes in self._test_codes.items():
            seqs = torch.from_numpy(self.sequences(codes, n))
            P = self.n_prefix(n)
            pred = greedy_complete(model, seqs[:, :P].to(device), self.n_generated(n)).cpu()[:, -(n + 1) :]  # (N, n+1)
            truth = seqs[:, -(n + 1) :]  # (N, n+1)
            if self.config.format == "reversed":
                pred, truth = pred.flip(1), truth.flip(1)
            out[n] = (pred, truth)
        return out

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        """Exact-match greedy accuracy of the answer over all test pairs, and the accuracy of its
        most significant digit (which needs every carry); with several n, also per n. Per n and
        answer digit j (0 = the most significant, whatever the format), that digit's accuracy:
        ``digit_accuracy_nN_J``."""
        preds = self.predictions(model)
        exact = {n: (p == t).all(dim=1).float() for n, (p, t) in preds.items()}
        first = {n: (p[:, 0] == t[:, 0]).float() for n, (p, t) in preds.items()}
        out = {
            "accuracy": torch.cat(list(exact.values())).mean().item(),
            "first_digit_accuracy": torch.cat(list(first.values())).mean().item(),
        }
        if len(preds) > 1:
            for n in preds:
                out[f"accuracy_n{n}"] = exact[n].mean().item()
                out[f"first_digit_accuracy_n{n}"] = first[n].mean().item()
        for n, (p, t) in preds.items():
            for j, acc in enumerate((p == t).float().mean(dim=0).tolist()):  # (n+1,) per answer digit
                out[f"digit_accuracy_n{n}_{j}"] = acc
        return out
