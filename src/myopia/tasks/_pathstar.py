"""``path-star``: the graph task of Bachmann & Nagarajan 2024 ("The pitfalls of next-token
prediction").

G(d, l): a source with d arms; a path from the source to the end of an arm has l nodes
(the source included), so the graph has 1 + d(l-1) nodes, labelled without repetition
from 0..N-1. The sequence is the shuffled edge list (u v pairs), then ``/ source goal =``,
then the path from source to goal; the loss counts the path tokens only. Train and test
graph sets are fixed by the task's seed and disjoint.

Data variants (from the objectives): ``teacherless`` replaces the path tokens fed as
inputs by a dummy ``$``; ``reverse`` writes the path goal-to-source.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from .._errors import UserError
from ._base import (
    TEST_SET_STREAM,
    TRAIN_SET_STREAM,
    TRAIN_STREAM,
    Batch,
    Task,
    TaskConfig,
    greedy_complete,
    rng,
    word_level_tokenizer,
)


class PathStarConfig(TaskConfig):
    name: Literal["path-star", "path-star-paper"] = "path-star"
    degree: int = Field(2, ge=2, description="d: number of arms")
    path_len: int = Field(4, ge=2, description="l: nodes on a source-to-leaf path, source included")
    n_nodes: int = Field(20, ge=3, description="N: node labels are drawn from 0..N-1")
    n_train: int = Field(50_000, ge=1)
    n_test: int = Field(2_000, ge=1)
    seed: int = Field(0, ge=0, description="fixes the train and test graph sets")

    @model_validator(mode="after")
    def _enough_labels(self):
        need = 1 + self.degree * (self.path_len - 1)
        if self.n_nodes < need:
            graph = f"G({self.degree},{self.path_len})"
            raise ValueError(f"n_nodes={self.n_nodes} is less than the {need} nodes of {graph}")
        return self


# the paper's setting (Bachmann & Nagarajan 2024): G(2,5), labels from 0..49, 200k / 20k graphs; a GPU run
PAPER = dict(name="path-star-paper", degree=2, path_len=5, n_nodes=50, n_train=200_000, n_test=20_000)


def _make_graphs(c: PathStarConfig, n: int, g: np.random.Generator) -> np.ndarray:
    """n graphs -> sequences (n, 2E + 3 + l): edges, '/', source, goal, '=', path."""
    d, l, N = c.degree, c.path_len, c.n_nodes
    n_used = 1 + d * (l - 1)
    SEP, EQ = N, N + 1
    labels = np.argsort(g.random((n, N)), axis=1)[:, :n_used]  # (n, n_used) distinct labels
    source = labels[:, 0]  # (n,)
    arms = labels[:, 1:].reshape(n, d, l - 1)  # (n, d, l-1)
    prev = np.concatenate([np.broadcast_to(source[:, None, None], (n, d, 1)), arms[:, :, :-1]], axis=2)  # (n, d, l-1)
    edges = np.stack([prev, arms], axis=-1).reshape(n, d * (l - 1), 2)  # (n, E, 2)
    order = np.argsort(g.random((n, d * (l - 1))), axis=1)  # (n, E) shuffle
    edges = np.take_along_axis(edges, order[:, :, None], axis=1).reshape(n, -1)  # (n, 2E)
    goal_arm = g.integers(0, d, size=n)  # (n,)
    path = np.concatenate([source[:, None], arms[np.arange(n), goal_arm]], axis=1)  # (n, l)
    goal = path[:, -1]
    head = np.stack([np.full(n, SEP), source, goal, np.full(n, EQ)], axis=1)  # (n, 4)
    return np.concatenate([edges, head, path], axis=1).astype(np.int64)


class PathStarTask(Task):
    config_cls = PathStarConfig
    supported_variants = ("teacherless", "reverse")

    def __init__(self, config: PathStarConfig):
        super().__init__(config)
        N = config.n_nodes
        self.sep, self.eq, self.dummy, self.pad = N, N + 1, N + 2, N + 3
        self.tokenizer = word_level_tokenizer([str(i) for i in range(N)] + ["/", "=", "$", "<pad>"])
        self._train: np.ndarray | None = None
        self._test: np.ndarray | None = None

    @property
    def vocab_size(self) -> int:
        return self.config.n_nodes + 4

    @property
    def n_prefix(self) -> int:
        """Tokens before the path: edges, '/', source, goal, '='."""
        c = self.config
        return 2 * c.degree * (c.path_len - 1) + 4

    @property
    def seq_len(self) -> int:
        return self.n_prefix + self.config.path_len - 1

    def prepare(self) -> None:
        if self._train is not None:
            return
        c = self.config
        test = _make_graphs(c, c.n_test, rng(c.seed, TEST_SET_STREAM))
        seen = {row.tobytes() for row in test[:, : self.n_prefix]}
        train, have = [], 0
        g = rng(c.seed, TRAIN_SET_STREAM)
        for _ in range(100):  # draw until n_train graphs disjoint from the test set
            cand = _make_graphs(c, c.n_train - have, g)
            keep = np.array([row.tobytes() not in seen for row in cand[:, : self.n_prefix]], dtype=bool)
            train.append(cand[keep])
            have += int(keep.sum())
            if have >= c.n_train:
                break
        else:
            raise UserError(
                f"path-star: cannot draw {c.n_train} training graphs disjoint from the test set; lower n_test"
            )
        self._train, self._test = np.concatenate(train)[: c.n_train], test

    def _to_batch(self, seqs: np.ndarray) -> Batch:
        P = self.n_prefix
        seqs = seqs.copy()
        if self.data_variant == "reverse":
            seqs[:, P:] = seqs[:, P:][:, ::-1]
        ids = torch.from_numpy(seqs)  # (B, P + l)
        inputs, targets = ids[:, :-1].clone(), ids[:, 1:].clone()  # (B, T)
        if self.data_variant == "teacherless":
            inputs[:, P:] = self.dummy  # path tokens fed as inputs -> '$'
        mask = torch.zeros(targets.shape)
        mask[:, P - 1 :] = 1.0  # positions P-1.. predict the l path tokens
        return Batch(inputs={"input_ids": inputs}, targets=targets, loss_mask=mask)

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        self.prepare()
        idx = rng(seed, TRAIN_STREAM, step).integers(0, len(self._train), size=batch_size)
        return self._to_batch(self._train[idx])

    def eval_batches(self, n_batches: int, batch_size: int) -> list[Batch]:
        self.prepare()
        n = min(n_batches * batch_size, len(self._test))
        return [self._to_batch(self._test[i : i + batch_size]) for i in range(0, n, batch_size)]

    @torch.no_grad()
    def predictions(self, model) -> dict[str, torch.Tensor]:
        """On the test graphs, each (n, l) in source-to-goal order whatever the variant: ``truth``,
        ``generated`` (greedy decoding from the prompt; teacherless: its one forward with '$'
        inputs) and ``teacher_forced`` (the argmax at each path position given the true path)."""
        self.prepare()
        P, l = self.n_prefix, self.config.path_len
        device = next(model.parameters()).device
        test = self._to_batch(self._test)
        truth = test.targets[:, P - 1 :]  # (n, l) in the variant's order
        logits = model(input_ids=test.inputs["input_ids"].to(device)).logits  # (n, T, V)
        forced = logits[:, P - 1 :].argmax(-1).cpu()  # (n, l)
        if self.data_variant == "teacherless":
            generated = forced
        else:
            prefix = torch.from_numpy(self._test[:, :P])  # (n, P) ends with '='
            generated = greedy_complete(model, prefix.to(device), l).cpu()  # (n, l)
        if self.data_variant == "reverse":  # back to source-to-goal order
            truth, forced, generated = truth.flip(1), forced.flip(1), generated.flip(1)
        return {"truth": truth, "generated": generated, "teacher_forced": forced}

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        """Whole-path greedy accuracy on the test graphs; the first hard step's (the node after the
        source: position 1 of the path, whatever order it is written in); and the accuracy at each
        path position i (0 = source) under generation and under teacher forcing. Teacher-forced
        accuracy near 1 at i >= 2 with the first step near 1/d is the Clever-Hans cheat."""
        p = self.predictions(model)
        truth = p["truth"]
        out = {
            "accuracy": (p["generated"] == truth).all(dim=1).float().mean().item(),
            "first_step_accuracy": (p["generated"][:, 1] == truth[:, 1]).float().mean().item(),
        }
        for kind in ("generated", "teacher_forced"):
            right = (p[kind] == truth).float().mean(dim=0)  # (l,)
            out.update({f"{kind}_accuracy_{i}": v for i, v in enumerate(right.tolist())})
        return out
