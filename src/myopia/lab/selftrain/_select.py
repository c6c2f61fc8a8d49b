"""Which of its K samples per prompt a round trains on (the selection conditions).

- ``top-k``: the k most probable by the current model's joint log-prob (the "n-token reasoner"
  of seeds/004: train on the best K outputs);
- ``random-k``: k at random (token-level training on the model's own samples);
- ``reward-k``: the k best by a reward (best of K, as in RAFT / ReST);
- ``rl``: no selection: every sample enters an RLOO update (see ``_rloo``).

Ties keep the earlier sample (a stable sort), so a selection is a pure function of its inputs and
the generator.
"""

from __future__ import annotations

import torch

from ..._errors import UserError

CONDITIONS = ("top-k", "random-k", "reward-k", "rl")


def check_k(k: int, K: int) -> None:
    if k > K:
        raise UserError(f"k={k} is more than K={K}: a round keeps k of the K samples of each prompt; use k <= K")


def select(condition: str, logprobs: torch.Tensor, rewards: torch.Tensor | None, k: int,
           gen: torch.Generator) -> torch.Tensor:
    """(G, K) scores of G prompts' K samples -> (G, k) indices of the kept samples."""
    G, K = logprobs.shape
    check_k(k, K)
    if condition == "top-k":
        return torch.sort(logprobs, dim=1, descending=True, stable=True).indices[:, :k]
    if condition == "reward-k":
        if rewards is None:
            raise ValueError("reward-k needs rewards")
        return torch.sort(rewards, dim=1, descending=True, stable=True).indices[:, :k]
    if condition == "random-k":
        return torch.stack([torch.randperm(K, generator=gen)[:k] for _ in range(G)])
    raise UserError(f"unknown selection {condition!r}; conditions: {', '.join(CONDITIONS)}")
