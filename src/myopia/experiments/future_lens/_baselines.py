"""What the readers are measured against, scored in the same classes: the count baselines fit
on the same training text, and the model's own next-token prediction.

- ``unigram``: the most frequent class (cross-entropy: smoothed frequencies);
- ``bigram``: the class at t+N from the token at t alone, by counts (a skip-bigram for N > 1):
  what the present token tells without any model;
- ``model``: the model's own next-token distribution collapsed onto the classes (N = 1 only).
"""

from __future__ import annotations

import torch

from ._classes import score
from ._states import LensStates


def unigram_logp(train_cls: torch.Tensor, n_classes: int, alpha: float = 0.5) -> torch.Tensor:
    """(V+1,) add-alpha smoothed class log-frequencies of the training targets."""
    counts = torch.bincount(train_cls, minlength=n_classes).double() + alpha
    return (counts / counts.sum()).log()


def bigram_logp(
    train_cur: torch.Tensor, train_cls: torch.Tensor, eval_cur: torch.Tensor, n_classes: int, prior_weight: float = 1.0
) -> torch.Tensor:
    """(n_eval, V+1) log P(class of x_{t+N} | x_t) from counts on the training pairs, with the
    unigram as a Dirichlet prior of weight ``prior_weight`` (unseen x_t: the unigram itself).

    ``train_cur``/``eval_cur`` are the full token ids at t; ``train_cls`` the class at t+N."""
    uni = unigram_logp(train_cls, n_classes).exp()  # (V+1,)
    seen, index = torch.unique(train_cur, return_inverse=True)
    dev = train_cur.device
    counts = torch.zeros(len(seen), n_classes, dtype=torch.float64, device=dev)  # (U, V+1)
    counts.index_put_((index, train_cls), torch.ones(len(train_cls), dtype=torch.float64, device=dev), accumulate=True)
    pos = torch.searchsorted(seen, eval_cur).clamp_max(len(seen) - 1)
    hit = seen[pos] == eval_cur
    c = torch.where(hit[:, None], counts[pos], torch.zeros(1, n_classes, dtype=torch.float64, device=dev))  # (n, V+1)
    probs = (c + prior_weight * uni) / (c.sum(1, keepdim=True) + prior_weight)
    return probs.log()


def baseline_rows(states: LensStates, key: dict) -> list[dict]:
    """One record per offset and baseline (``unigram``, ``bigram``), and the model's own (t+1)."""
    n_tr, n_ev, C = states.n_train, states.n_eval, states.classes.n
    rows = []
    for k in range(states.offsets):
        uni = unigram_logp(states.train_targets[:, k], C).expand(n_ev, -1)  # (n_ev, C)
        big = bigram_logp(states.train_ids[:n_tr], states.train_targets[:, k], states.eval_ids[:n_ev], C)
        for kind, lp in (("unigram", uni), ("bigram", big)):
            acc, ce = score(lp, states.eval_targets[:, k])
            rows.append({**key, "offset": k + 1, "kind": kind, "accuracy": acc, "cross_entropy": ce})
    acc, ce = score(states.own[:n_ev], states.eval_targets[:, 0])
    rows.append({**key, "offset": 1, "kind": "model", "accuracy": acc, "cross_entropy": ce})
    return rows
