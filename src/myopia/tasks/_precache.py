"""``precache``: the synthetic pre-caching task of Wu, Morris & Levine 2024.

x_i ~ N(0,1), z_i ~ Bernoulli(p); the input at position i is (x_i, z_i) through a linear
embedding; the target is  y_i = z_i * sum_{k=1..K} sin(f x_{i-k}) + (1 - z_i) x_i  (x_j = 0
for j < 0). Solving it at i needs features of x_{i-k} computed at the *earlier* positions,
which only the off-diagonal gradient terms reward: vanilla training solves it, myopic
training cannot.

The model stays an ordinary HF causal LM: its vocabulary has 2 entries, whose embedding
matrix (2, d) serves as the linear embedding (``inputs_embeds = [x, z] @ W_E``), and
channel 0 of its output is the regression value (Huber loss).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from ._base import EVAL_STREAM, TRAIN_STREAM, Batch, Task, TaskConfig, rng


class PrecacheConfig(TaskConfig):
    name: Literal["precache", "precache-paper"] = "precache"
    k: int = Field(6, ge=1, description="K: how many past inputs the target sums over")
    frequency: float = Field(2.0, gt=0, description="f in sin(f x)")
    p: float = Field(1.0, ge=0, le=1, description="P(z_i = 1)")
    length: int = Field(32, ge=2, description="sequence length")
    huber_delta: float = Field(1.0, gt=0)


# The paper's setting (GPU scale; at CPU scale it does not leave the trivial loss in minutes).
PAPER = dict(name="precache-paper", k=10, frequency=10.0, p=1.0, length=64)


class PrecacheTask(Task):
    config_cls = PrecacheConfig
    kind = "values"

    @property
    def vocab_size(self) -> int:
        return 2

    @property
    def seq_len(self) -> int:
        return self.config.length

    def _sample(self, g: np.random.Generator, batch_size: int) -> Batch:
        c = self.config
        T = c.length
        x = g.standard_normal((batch_size, T))  # (B,T)
        z = (g.random((batch_size, T)) < c.p).astype(np.float64)  # (B,T)
        s = np.sin(c.frequency * x)  # (B,T)
        past = np.zeros_like(s)
        for k in range(1, c.k + 1):  # past[:, i] = sum_k sin(f x_{i-k}), zero padding
            past[:, k:] += s[:, : T - k]
        y = z * past + (1 - z) * x  # (B,T)
        feats = np.stack([x, z], axis=-1)  # (B,T,2)
        return Batch(
            inputs={"features": torch.from_numpy(feats).float()},
            targets=torch.from_numpy(y).float(),
            loss_mask=torch.ones(batch_size, T),
        )

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        return self._sample(rng(seed, TRAIN_STREAM, step), batch_size)

    def eval_batches(self, n_batches: int, batch_size: int) -> list[Batch]:
        return [self._sample(rng(0, EVAL_STREAM, i), batch_size) for i in range(n_batches)]

    def embed(self, batch: Batch, model) -> Batch:
        """``inputs_embeds = [x, z] @ W_E`` with the model's live (2, d) embedding matrix."""
        if "features" not in batch.inputs:
            return batch
        w = model.get_input_embeddings().weight  # (2, d)
        feats = batch.inputs["features"].to(w.dtype)  # (B,T,2)
        return Batch(inputs={"inputs_embeds": feats @ w}, targets=batch.targets, loss_mask=batch.loss_mask)

    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """output (B,T,V): channel 0 is the prediction -> Huber loss (B,T)."""
        pred = output[..., 0].float()  # (B,T)
        return F.huber_loss(pred, targets.float(), reduction="none", delta=self.config.huber_delta)
