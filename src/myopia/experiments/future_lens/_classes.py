"""The output space every future-lens predictor is scored in.

The ``V`` most frequent tokens of the probe-training text plus one "other" class for every
other token. Every predictor (a reader, the unigram and bigram baselines, the model's own
next-token distribution collapsed onto these classes) is scored the same way:

- accuracy: the argmax over the V kept tokens equals the target; a target outside the kept
  tokens is always a miss (so accuracies are comparable and never inflated by "other");
- cross-entropy: nats per position over the V + 1 classes.

A reader that predicts over the full vocabulary is scored after :func:`collapse_logits`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Classes:
    """The restricted output space: ``kept`` token ids -> classes 0..V-1, the rest -> V."""

    kept: torch.Tensor  # (V,) token ids, most frequent first
    lookup: dict[int, int]

    @classmethod
    def top(cls, ids: torch.Tensor, v: int) -> "Classes":
        uniq, counts = torch.unique(ids, return_counts=True)
        order = sorted(range(len(uniq)), key=lambda i: (-int(counts[i]), int(uniq[i])))[:v]
        kept = uniq[order]
        return cls(kept, {int(t): i for i, t in enumerate(kept.tolist())})

    @property
    def n(self) -> int:
        return len(self.kept) + 1  # + "other"

    def of(self, ids: torch.Tensor) -> torch.Tensor:
        """(n,) the classes of token ids (n,), on the device of ``kept``."""
        other = len(self.kept)
        return torch.tensor(
            [self.lookup.get(int(t), other) for t in ids.tolist()], dtype=torch.long, device=self.kept.device
        )

    def to(self, device) -> "Classes":
        """The same classes with ``kept`` on ``device`` (where the logits it indexes are)."""
        return Classes(self.kept.to(device), self.lookup)


def score(logp: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """(accuracy, cross-entropy) of class log-probs (n, V+1) against class targets (n,)."""
    other = logp.shape[1] - 1
    pred = logp[:, :other].argmax(1)  # (n,) over the kept tokens only
    acc = ((pred == target) & (target != other)).double().mean().item()
    ce = -logp.gather(1, target[:, None]).double().mean().item()
    return acc, ce


def collapse_logits(logits: torch.Tensor, classes: Classes) -> torch.Tensor:
    """Full-vocabulary logits (n, vocab) -> class log-probs (n, V+1): kept tokens keep their
    log-prob, "other" gets the log of the remaining mass."""
    logp = F.log_softmax(logits.double(), dim=-1)  # (n, vocab)
    kept = logp[:, classes.kept]  # (n, V)
    rest = (1 - kept.exp().sum(1)).clamp_min(1e-30).log()  # (n,)
    return torch.cat([kept, rest[:, None]], dim=1)
