"""Readers: the methods that read the tokens at t+1..t+K out of the hidden state at (layer, t).

A reader is fit on the training part of the cached states and applied to the evaluation part;
it returns class log-probs (:class:`Reading`), and every reader is scored alike, per offset, in
the classes of :mod:`._classes`. The four (``method`` values of the spec, weakest first):

- ``linear`` (:mod:`._probe`): a linear probe to the classes;
- ``future-state`` (:mod:`._future_state`): a linear map to the model's last-layer state at
  t+N-1, decoded by the model's own final norm and unembedding;
- ``transplant`` (:mod:`._transplant`): the state put into a fixed generic context, the model
  run on from there (greedy for N > 1);
- ``learned-prompt`` (:mod:`._prompt`): the same with soft prompt vectors trained per layer, in
  place of the context and of the decoded tokens.

The last three predict over the model's full vocabulary; their distribution is collapsed onto
the classes (:func:`._classes.collapse_logits`) and scored like every other: top-1 over the kept
tokens (a reader's most probable kept token is its prediction), cross-entropy over kept + "other".
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Protocol

import torch

from ._classes import score
from ._states import LensStates


@dataclass
class Reading:
    """A reader's class log-probs for the tokens at t+1..t+K."""

    train: torch.Tensor | None  # (n_train, k, V+1) at the training positions; None: not computed
    eval: torch.Tensor  # (n_eval, k, V+1) at the evaluation positions; k <= K: it reads t+1..t+k


class Reader(Protocol):
    method: str  # the reader's name, a value of the spec's ``methods``

    def read(self, states: LensStates, layer: int) -> Reading:
        """Fit on ``states``' training part at ``layer``; log-probs on the evaluation part (and
        on the training part where that is cheap)."""
        ...


def reading_rows(reading: Reading, states: LensStates, layer: int, key: dict) -> list[dict]:
    """One record per offset the reading covers: held-out accuracy and cross-entropy, and training
    accuracy (None where the reader does not score its training part)."""
    rows = []
    for k in range(reading.eval.shape[1]):
        acc, ce = score(reading.eval[:, k], states.eval_targets[:, k])
        tr_acc = None if reading.train is None else score(reading.train[:, k], states.train_targets[:, k])[0]
        rows.append({**key, "layer": layer, "depth": layer / states.n_layers, "offset": k + 1,
                     "accuracy": acc, "cross_entropy": ce, "train_accuracy": tr_acc})
    return rows


@contextmanager
def frozen(model) -> Iterator[None]:
    """The model's parameters take no gradient while active (their flags restored after): a
    reader that trains through the model moves only its own parameters."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)
