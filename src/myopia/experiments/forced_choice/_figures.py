"""Forced-choice figure: grouped bars per model (classes x variants), CIs on sampled bars."""

from __future__ import annotations

from ...report import plt
from ._core import OTHER

STYLE = {"exact": dict(alpha=1.0, hatch=""), "sampled": dict(alpha=0.45, hatch=""),
         "pattern": dict(alpha=0.7, hatch="//")}


def class_bars(model: str, variants: list[str], idx):
    """One panel per variant; per class, up to three bars (exact, sampled, pattern)."""
    n = len(variants)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, v in zip(axes.flat, variants):
        names = []
        for m in STYLE:
            names += [c for c in idx.get((model, v, m), {}) if c not in names and c != OTHER]
        names.append(OTHER)
        for j, m in enumerate(STYLE):
            recs = idx.get((model, v, m), {})
            for i, name in enumerate(names):
                r = recs.get(name)
                if r is None:
                    continue
                x = i + (j - 1) * 0.27
                ax.bar(x, r["probability"], width=0.27, color=colors[i % len(colors)], edgecolor="black",
                       linewidth=0.4, label=m if i == 0 else None, **STYLE[m])
                if r["low"] is not None:
                    err = [[max(0.0, r["probability"] - r["low"])], [max(0.0, r["high"] - r["probability"])]]
                    ax.errorbar(x, r["probability"], yerr=err, color="black", capsize=2, linewidth=0.8)
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_title(v, fontsize=9)
        ax.set_ylim(0, 1)
    for ax in axes.flat[n:]:
        ax.axis("off")
    axes[0, 0].set_ylabel("probability")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    fig.suptitle(model, fontsize=10)
    fig.tight_layout()
    return fig
