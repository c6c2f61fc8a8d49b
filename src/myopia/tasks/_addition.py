"""``addition``: n-digit addition ``a + b = c``, digits in normal or reversed order.

Written most-significant digit first, the first answer digit depends on every carry to
come (serial depth at the first step); reversed (least-significant first, for a, b and c),
each answer digit needs only the current column and one carry. Numbers are zero-padded
to n digits (the sum to n+1). The loss counts the answer digits only; the test pairs are
fixed by the task's seed and never drawn for training.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from ._base import TEST_SET_STREAM, TRAIN_STREAM, Batch, Task, TaskConfig, greedy_complete, rng, word_level_tokenizer

PLUS, EQ, PAD = 10, 11, 12


class AdditionConfig(TaskConfig):
    name: Literal["addition"] = "addition"
    n_digits: int = Field(3, ge=1, le=9)  # a * 10^n + b must fit in int64
    reverse: bool = Field(False, description="write every number least-significant digit first")
    n_test: int = Field(1_000, ge=1)
    seed: int = Field(0, ge=0, description="fixes the test set")


def _digits(v: np.ndarray, width: int, reverse: bool) -> np.ndarray:
    """(n,) non-negative ints -> (n, width) digits, most significant first unless reverse."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)  # (width,)
    d = (v[:, None] // powers[None, :]) % 10  # (n, width)
    return d[:, ::-1] if reverse else d


class AdditionTask(Task):
    config_cls = AdditionConfig

    def __init__(self, config: AdditionConfig):
        super().__init__(config)
        self.tokenizer = word_level_tokenizer([str(i) for i in range(10)] + ["+", "=", "<pad>"])
        n = config.n_digits
        g = rng(config.seed, TEST_SET_STREAM)
        n_pairs = 10 ** (2 * n)
        n_test = min(config.n_test, n_pairs // 2)
        codes = g.choice(n_pairs, size=n_test, replace=False)
        self._test_codes = np.sort(codes.astype(np.int64))  # code = a * 10^n + b

    @property
    def vocab_size(self) -> int:
        return 13

    @property
    def n_prefix(self) -> int:
        return 2 * self.config.n_digits + 2  # a + b =

    @property
    def seq_len(self) -> int:
        return self.n_prefix + self.config.n_digits  # answer has n+1 digits, inputs drop the last

    def _sequences(self, codes: np.ndarray) -> np.ndarray:
        n, rev = self.config.n_digits, self.config.reverse
        a, b = codes // 10**n, codes % 10**n
        cols = [_digits(a, n, rev), np.full((len(codes), 1), PLUS), _digits(b, n, rev)]
        cols += [np.full((len(codes), 1), EQ), _digits(a + b, n + 1, rev)]
        return np.concatenate(cols, axis=1).astype(np.int64)  # (N, 3n + 3)

    def _to_batch(self, seqs: np.ndarray) -> Batch:
        ids = torch.from_numpy(seqs)
        targets = ids[:, 1:].clone()  # (B, T)
        mask = torch.zeros(targets.shape)
        mask[:, self.n_prefix - 1 :] = 1.0  # the n+1 answer digits
        return Batch(inputs={"input_ids": ids[:, :-1].clone()}, targets=targets, loss_mask=mask)

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        g = rng(seed, TRAIN_STREAM, step)
        n_pairs = 10 ** (2 * self.config.n_digits)
        codes = g.integers(0, n_pairs, size=batch_size)
        while True:  # redraw the (rare) test pairs
            bad = np.isin(codes, self._test_codes)
            if not bad.any():
                break
            codes[bad] = g.integers(0, n_pairs, size=int(bad.sum()))
        return self._to_batch(self._sequences(codes))

    def eval_batches(self, n_batches: int, batch_size: int) -> list[Batch]:
        seqs = self._sequences(self._test_codes)
        n = min(n_batches * batch_size, len(seqs))
        return [self._to_batch(seqs[i : i + batch_size]) for i in range(0, n, batch_size)]

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        """Exact-match greedy accuracy of the whole answer on the test pairs."""
        device = next(model.parameters()).device
        seqs = torch.from_numpy(self._sequences(self._test_codes))
        P = self.n_prefix
        pred = greedy_complete(model, seqs[:, :P].to(device), self.config.n_digits + 1).cpu()
        return {"accuracy": (pred == seqs[:, P:]).all(dim=1).float().mean().item()}
