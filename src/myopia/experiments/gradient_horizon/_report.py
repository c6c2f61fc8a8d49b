"""The gradient-horizon report section: the headline table, a layer x offset heatmap per model,
future share by depth, and the first offsets' shares as a table (from the stored tables only)."""

from __future__ import annotations

from ...report import heatmap, plt
from .._base import Tables
from ._spec import GradientHorizonSpec
from ._summary import GradientHorizonSummary, ModelHorizon, Shares, share_matrices


def report(tables: Tables, spec: GradientHorizonSpec, summary: GradientHorizonSummary, section) -> None:
    section.text(
        f"Where the gradient at each residual stream comes from, on {spec.sequences} window(s) of "
        f"{spec.seq_len} tokens of {spec.text}. 'future share' is the share of the gradient at layer l, "
        "position i that comes from the losses at positions after i (1 − the d = 0 share of the signed "
        "projection on the full gradient; exact, pooled over positions). 'myopic drop' is "
        "‖∇θL − ∇θL_myopic‖ / ‖∇θL‖: the part of the parameter gradient that myopic descent would drop."
    )
    section.table(*summary.table(), caption="Share of the gradient from later positions' losses")
    mats = share_matrices(tables["horizon"])
    for (model, attention), m in mats.items():
        section.figure(
            heatmap_figure(model, attention, m),
            caption=f"{model} ({attention}): share of the gradient at the residual stream after each "
            "block (rows; emb = embeddings) that comes from the loss d positions ahead (columns; "
            f"'>{spec.max_offset}' = farther). Left: signed projection (rows sum to 1); right: norm share.",
        )
    section.figure(
        future_share_figure(summary.models),
        caption="Future share by relative depth, one line per model: how far from next-token the "
        "gradient at each layer is.",
    )
    header = ["model", "attention", "layer"] + [f"d={d}" for d in range(min(spec.max_offset, 8) + 1)]
    rows = []
    for (model, attention), m in mats.items():
        for layer, row in enumerate(m["proj"]):
            shares = [f"{x:.3f}" for x in row[: len(header) - 3]]
            rows.append([model, attention, "emb" if layer == 0 else layer] + shares)
    section.table(header, rows, caption="Signed-projection shares by layer and offset (first offsets)")


def heatmap_figure(model: str, attention: str, m: Shares):
    n_layers = len(m["proj"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 1.6 + 0.22 * n_layers))
    layers = ["emb"] + [str(i) for i in range(1, n_layers)]
    for ax, key, title in zip(axes, ("proj", "norm"), ("signed projection share", "norm share")):
        heatmap(ax, m[key], m["bins"], layers, f"{model} ({attention}): {title}", vmin=0.0, vmax=1.0)
        ax.set_xlabel("offset d of the target position (loss at i + d)")
        ax.set_ylabel("residual stream after block")
    fig.tight_layout()
    return fig


def future_share_figure(models: list[ModelHorizon]):
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in models:
        ys = r.future_share
        xs = [i / max(len(ys) - 1, 1) for i in range(len(ys))]
        ax.plot(xs, ys, marker=".", label=f"{r.model} ({r.attention})")
    ax.set_xlabel("relative depth (0 = embeddings, 1 = after the last block)")
    ax.set_ylabel("share of the gradient from later losses")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
