"""Grouping, headline groups and figures for ``head-roles`` (from the stored tables only)."""

from __future__ import annotations

from typing import Any

from ...report import plt

_ROLE_COLORS = {"previous": "#d62728", "induction": "#1f77b4"}


def by_model_data(rows: list[dict]) -> dict[str, dict[str, list[dict]]]:
    out: dict[str, dict[str, list[dict]]] = {}
    for r in rows:
        out.setdefault(r["model"], {}).setdefault(r["data"], []).append(r)
    for per in out.values():
        for v in per.values():
            v.sort(key=lambda r: (r["layer"], r["head"]))
    return out


def matrix(rows: list[dict], key: str) -> list[list[float]]:
    """(layers x heads) nested list of one column."""
    n_layers = 1 + max(r["layer"] for r in rows)
    n_heads = 1 + max(r["head"] for r in rows)
    m = [[0.0] * n_heads for _ in range(n_layers)]
    for r in rows:
        m[r["layer"]][r["head"]] = r[key]
    return m


def ranked(role: str, layer: int, n_layers: int) -> bool:
    """Whether a head in ``layer`` is ranked for ``role``. Previous-token heads are ranked outside
    the last block: no later block reads its heads, so their Δfuture is 0 by construction (a
    one-block model keeps all its heads)."""
    return role != "previous" or n_layers == 1 or layer < n_layers - 1


def top_heads(rows: list[dict], role: str, k: int) -> list[dict]:
    """The k ranked heads (see :func:`ranked`) with the highest ``role`` score."""
    n_layers = 1 + max(r["layer"] for r in rows)
    return sorted((r for r in rows if ranked(role, r["layer"], n_layers)), key=lambda r: -r[role])[:k]


def top_group(rows: list[dict], score: str, k: int) -> dict[str, Any]:
    """The top k heads for ``score``: their ids, mean score and mean loss changes."""
    top = top_heads(rows, score, k)
    out: dict[str, Any] = {"heads": [[r["layer"], r["head"]] for r in top], "score": _mean([r[score] for r in top])}
    for mode in ("own", "future", "full"):
        out[mode] = _mean([r[f"d_{mode}"] for r in top])
    out["future_fraction"] = _mean([_fraction(r) for r in top])
    return out


def _fraction(r: dict) -> float | None:
    own, fut = r["d_own"], r["d_future"]
    if own is None or fut is None or abs(own) + abs(fut) == 0:
        return None
    return fut / (abs(own) + abs(fut))


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def score_figure(model: str, data: str, rows: list[dict]):

    names = ("previous", "duplicate", "induction")
    n_layers = 1 + max(r["layer"] for r in rows)
    fig, axes = plt.subplots(1, 3, figsize=(13, 1.8 + 0.2 * n_layers))
    for ax, name in zip(axes, names):
        im = ax.imshow(matrix(rows, name), aspect="auto", cmap="magma", vmin=0.0, vmax=1.0, origin="lower")
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(f"{model} · {data}: {name}", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    return fig


def usefulness_figure(model: str, data: str, rows: list[dict], k: int):

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    rows = [r for r in rows if r["d_own"] is not None]  # the ablated heads
    xs = [r["d_own"] for r in rows]
    ys = [r["d_future"] for r in rows]
    ax.scatter(xs, ys, s=12, color="#bbbbbb", label="all heads")
    for role, color in _ROLE_COLORS.items():
        top = top_heads(rows, role, k)
        ax.scatter([r["d_own"] for r in top], [r["d_future"] for r in top], s=40, color=color, label=f"top {k} {role}")
        for r in top:
            ax.annotate(f"L{r['layer']}H{r['head']}", (r["d_own"], r["d_future"]), fontsize=7, color=color)
    lim = max([abs(v) for v in xs + ys] + [1e-6])
    ax.plot([-lim, lim], [-lim, lim], color="grey", lw=0.8, ls="--")
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("Δ loss, removed at its own position only (nats/token)")
    ax.set_ylabel("Δ loss, removed from later positions' reads only")
    ax.set_title(f"{model} · {data}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
