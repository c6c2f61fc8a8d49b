"""Share matrices and figures for ``gradient-horizon`` (from the stored tables only)."""

from __future__ import annotations

from ...report import plt


def share_matrices(rows: list[dict]) -> dict[tuple[str, str], dict[str, list[list[float]]]]:
    """{(model, attention): {"proj": [[share per offset bin] per layer], "norm": ..., "bins": [...]}},
    the sums pooled over sequences before dividing (ratios of sums)."""
    acc: dict[tuple[str, str], dict] = {}
    for r in rows:
        a = acc.setdefault((r["model"], r["attention"]), {"norm": {}, "proj": {}, "full": {}, "bins": {}})
        key = (r["layer"], r["offset"])
        a["norm"][key] = a["norm"].get(key, 0.0) + r["norm_sum"]
        a["proj"][key] = a["proj"].get(key, 0.0) + r["proj_sum"]
        if r["offset"] == 0:
            a["full"][r["layer"]] = a["full"].get(r["layer"], 0.0) + r["full_sq"]
        a["bins"][r["offset"]] = r["bin"]
    out = {}
    for k, a in acc.items():
        layers = sorted(a["full"])
        offsets = sorted(a["bins"])
        proj, norm = [], []
        for layer in layers:
            full = a["full"][layer]
            total = sum(a["norm"][(layer, d)] for d in offsets)
            proj.append([a["proj"][(layer, d)] / full if full > 0 else 0.0 for d in offsets])
            norm.append([a["norm"][(layer, d)] / total if total > 0 else 0.0 for d in offsets])
        out[k] = {"proj": proj, "norm": norm, "bins": [a["bins"][d] for d in offsets]}
    return dict(sorted(out.items()))


def heatmap_figure(model: str, attention: str, m: dict):
    n_layers = len(m["proj"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 1.6 + 0.22 * n_layers))
    for ax, key, title in zip(axes, ("proj", "norm"), ("signed projection share", "norm share")):
        im = ax.imshow(m[key], aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, origin="lower")
        ax.set_xticks(range(len(m["bins"])), m["bins"], fontsize=7)
        ax.set_yticks(range(n_layers), ["emb"] + [str(i) for i in range(1, n_layers)], fontsize=7)
        ax.set_xlabel("offset d of the target position (loss at i + d)")
        ax.set_ylabel("residual stream after block")
        ax.set_title(f"{model} ({attention}): {title}", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig


def future_share_figure(models: list[dict]):
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in models:
        ys = r["future_share"]
        xs = [i / max(len(ys) - 1, 1) for i in range(len(ys))]
        ax.plot(xs, ys, marker=".", label=f"{r['model']} ({r['attention']})")
    ax.set_xlabel("relative depth (0 = embeddings, 1 = after the last block)")
    ax.set_ylabel("share of the gradient from later losses")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
