"""The ``future-lens`` figure: probe accuracy by layer, one line per offset, one panel per model."""

from __future__ import annotations

from ...report import plt


def accuracy_figure(probes: list[dict], baselines: list[dict], models: list[str]):

    names = [m for m in models if any(r["model"] == m for r in probes)]
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.6 * rows), squeeze=False, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, m in enumerate(names):
        ax = axes[i // cols][i % cols]
        recs = [r for r in probes if r["model"] == m]
        base = [r for r in baselines if r["model"] == m]
        for j, n in enumerate(sorted({r["offset"] for r in recs})):
            c = colors[j % len(colors)]
            pts = sorted((r["layer"], r["accuracy"]) for r in recs if r["offset"] == n)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, color=c, label=f"t+{n}")
            for r in base:
                if r["offset"] == n and r["kind"] == "bigram":
                    ax.axhline(r["accuracy"], color=c, ls="--", lw=1)
        uni = [r["accuracy"] for r in base if r["kind"] == "unigram" and r["offset"] == 1]
        if uni:
            ax.axhline(uni[0], color="grey", ls=":", lw=1.2, label="unigram")
        own = [r["accuracy"] for r in base if r["kind"] == "model"]
        if own:
            ax.axhline(own[0], color="black", lw=1, label="model (t+1)")
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_ylabel("top-1 accuracy")
        ax.legend(fontsize=7)
    for k in range(len(names), rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.tight_layout()
    return fig
