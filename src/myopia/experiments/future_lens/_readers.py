"""Readers: the methods that read the tokens at t+1..t+K out of the hidden state at (layer, t).

A reader is fit on the training part of the cached states and applied to the evaluation part;
it returns class log-probs (:class:`Reading`), and every reader is scored alike, per offset, in
the classes of :mod:`._classes` (a full-vocabulary reader collapses its distribution there with
:func:`._classes.collapse_logits`). The linear probe (:mod:`._probe`) is the one reader today;
another (a map to the future last-layer state, a prompt transplant, a learned prompt) is one more
class with a ``read`` method, listed in :func:`._experiment.readers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from ._classes import score
from ._states import LensStates


@dataclass
class Reading:
    """A reader's class log-probs for the tokens at t+1..t+K."""

    train: torch.Tensor  # (n_train, K, V+1) at the training positions
    eval: torch.Tensor  # (n_eval, K, V+1) at the evaluation positions


class Reader(Protocol):
    method: str  # the reader's name

    def read(self, states: LensStates, layer: int) -> Reading:
        """Fit on ``states``' training part at ``layer``; log-probs on both parts."""
        ...


def reading_rows(reading: Reading, states: LensStates, layer: int, key: dict) -> list[dict]:
    """One record per offset: held-out accuracy and cross-entropy, and training accuracy."""
    rows = []
    for k in range(states.offsets):
        acc, ce = score(reading.eval[:, k], states.eval_targets[:, k])
        tr_acc, _ = score(reading.train[:, k], states.train_targets[:, k])
        rows.append({**key, "layer": layer, "depth": layer / states.n_layers, "offset": k + 1,
                     "accuracy": acc, "cross_entropy": ce, "train_accuracy": tr_acc})
    return rows
