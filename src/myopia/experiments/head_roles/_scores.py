"""Attention-pattern scores of ``head-roles``: TransformerLens's ``detect_head`` definitions.

For one sequence and one head with attention pattern A (T x T, rows = queries), and a 0/1
detection pattern P (lower triangular), the "mul" score is Σ A'·P / Σ A', where A' is A with
the BOS column zeroed (``exclude_bos``) and/or the diagonal zeroed (``exclude_current_token``).
Scores are averaged over sequences. The patterns:

- previous token: P[q, k] = 1 iff k = q − 1;
- duplicate token: P[q, k] = 1 iff k < q and token[k] = token[q];
- induction: P[q, k] = 1 iff 1 ≤ k ≤ q and token[k − 1] = token[q] with k − 1 < q
  (the duplicate pattern shifted one key to the right).
"""

from __future__ import annotations

import torch

from ...interp import attention

SCORES = ("previous", "duplicate", "induction")


def detection_patterns(ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """{score name: (B, T, T) float 0/1 pattern} for token ids (B, T)."""
    b, t = ids.shape
    below = torch.ones(t, t, dtype=torch.bool, device=ids.device).tril(-1)  # k < q
    same = ids[:, :, None] == ids[:, None, :]  # (B, T, T): token[q] == token[k]
    dup = same & below  # (B, T, T)
    ind = torch.zeros_like(dup)
    ind[:, :, 1:] = dup[:, :, :-1]  # (B, T, T): key k marked when key k − 1 is a duplicate of q
    ind &= torch.ones(t, t, dtype=torch.bool, device=ids.device).tril()  # k ≤ q
    prev = torch.zeros(t, t, dtype=torch.bool, device=ids.device)
    prev[1:, :-1] = torch.eye(t - 1, dtype=torch.bool, device=ids.device)  # k = q − 1
    return {
        "previous": prev.expand(b, t, t).float(),
        "duplicate": dup.float(),
        "induction": ind.float(),
    }


@torch.no_grad()
def attention_patterns(model, ids: torch.Tensor) -> torch.Tensor:
    """(L, B, H, T, T) attention probabilities of every head, from an eager forward."""
    with attention(model, "eager"):
        out = model(input_ids=ids, output_attentions=True, use_cache=False)
    return torch.stack([a.float() for a in out.attentions])  # (L, B, H, T, T)


def head_scores(
    patterns: torch.Tensor, ids: torch.Tensor, exclude_bos: bool = False, exclude_current_token: bool = False
) -> dict[str, torch.Tensor]:
    """{score name: (L, H) mean over sequences of the "mul" score} from patterns (L, B, H, T, T)."""
    a = patterns.clone()
    if exclude_bos:
        a[..., 0] = 0
    if exclude_current_token:
        a.diagonal(dim1=-2, dim2=-1).zero_()
    total = a.sum((-1, -2))  # (L, B, H)
    out = {}
    for name, p in detection_patterns(ids).items():
        hit = (a * p[None, :, None]).sum((-1, -2))  # (L, B, H)
        out[name] = (hit / total).mean(1)  # (L, H)
    return out
