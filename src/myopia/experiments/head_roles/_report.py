"""The head-roles report section: the headline table, per model and data set the score heatmaps
and a scatter of Δown vs Δfuture (from the stored tables only)."""

from __future__ import annotations

from ...report import heatmap, plt
from .._base import Tables
from ._ranking import ROLES, top_heads
from ._scores import SCORES
from ._spec import HeadRolesSpec
from ._summary import HeadRolesSummary, by_model_data, matrix

_ROLE_COLORS = dict(zip(ROLES, ("#d62728", "#1f77b4")))


def report(tables: Tables, spec: HeadRolesSpec, summary: HeadRolesSummary, section) -> None:
    section.text(
        f"For the {spec.top_k} heads with the highest previous-token and induction scores on each data set: "
        "the mean score and the loss increase (nats/token) when the head's output is removed "
        f"({spec.ablation} ablation) from its own position only (Δ own), from what later positions read "
        "through keys and values only (Δ future), and everywhere (Δ full). 'future fraction' = "
        "Δfuture / (|Δown| + |Δfuture|): near 1 means the head is useful only to later positions "
        "(the seeds/003 claim for previous-token heads)."
    )
    section.table(*summary.table(), caption="Roles of the top previous-token and induction heads")
    for model, per_data in by_model_data(tables["heads"]).items():
        for data, rows in per_data.items():
            section.figure(
                score_figure(model, data, rows),
                caption=f"{model} · {data}: previous-token, duplicate-token and induction scores (layer x head).",
            )
            if any(r["d_own"] is not None for r in rows):
                section.figure(
                    usefulness_figure(model, data, rows, spec.top_k),
                    caption=f"{model} · {data}: loss increase when each head is removed from its own "
                    "position only (x) vs from what later positions read only (y); the top "
                    "previous-token and induction heads are highlighted.",
                )


def score_figure(model: str, data: str, rows: list[dict]):
    n_layers = 1 + max(r["layer"] for r in rows)
    n_heads = 1 + max(r["head"] for r in rows)
    heads, layers = [str(h) for h in range(n_heads)], [str(layer) for layer in range(n_layers)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 1.8 + 0.2 * n_layers))
    for ax, name in zip(axes, SCORES):
        heatmap(ax, matrix(rows, name), heads, layers, f"{model} · {data}: {name}", vmin=0.0, vmax=1.0, cmap="magma")
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
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
