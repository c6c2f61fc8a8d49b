"""Which heads play a role: ranking by pattern score, and the headline's top groups (``head-roles``).

The same ranking picks the heads ``ablate = "top"`` ablates (in the cell) and the heads the
headline averages (in the summary), so the two always name the same heads.
"""

from __future__ import annotations

from typing import Any

import torch

from ...stats import mean

ROLES = ("previous", "induction")  # the roles the headline ranks heads for


def ranked(role: str, layer: int, n_layers: int) -> bool:
    """Whether a head in ``layer`` is ranked for ``role``. Previous-token heads are ranked outside
    the last block: no later block reads its heads, so their Δfuture is 0 by construction (a
    one-block model keeps all its heads)."""
    return role != "previous" or n_layers == 1 or layer < n_layers - 1


def top_heads(rows: list[dict], role: str, k: int) -> list[dict]:
    """The k ranked heads (see :func:`ranked`) with the highest ``role`` score; rows hold
    ``layer``, ``head`` and the score."""
    n_layers = 1 + max(r["layer"] for r in rows)
    return sorted((r for r in rows if ranked(role, r["layer"], n_layers)), key=lambda r: -r[role])[:k]


def top_of_scores(scores: dict[str, torch.Tensor], k: int) -> set[tuple[int, int]]:
    """(layer, head) of the top k heads of each role in :data:`ROLES`, from score matrices (L, H)."""
    n_layers, n_heads = scores[ROLES[0]].shape
    rows = [
        {"layer": layer, "head": h, **{role: float(scores[role][layer, h]) for role in ROLES}}
        for layer in range(n_layers)
        for h in range(n_heads)
    ]
    return {(r["layer"], r["head"]) for role in ROLES for r in top_heads(rows, role, k)}


def future_fraction(r: dict) -> float | None:
    """Δfuture / (|Δown| + |Δfuture|) of one head (None if it was not ablated or both are 0)."""
    own, fut = r["d_own"], r["d_future"]
    if own is None or fut is None or abs(own) + abs(fut) == 0:
        return None
    return fut / (abs(own) + abs(fut))


def top_group(rows: list[dict], role: str, k: int) -> dict[str, Any]:
    """The top k heads for ``role``: their [layer, head], and the means over them (heads that were
    not ablated left out) of the score, the loss changes and the future fraction."""
    top = top_heads(rows, role, k)
    out: dict[str, Any] = {"heads": [[r["layer"], r["head"]] for r in top], "score": mean([r[role] for r in top])}
    for mode in ("own", "future", "full"):
        out[mode] = mean([r[f"d_{mode}"] for r in top])
    out["future_fraction"] = mean([future_fraction(r) for r in top])
    return out
