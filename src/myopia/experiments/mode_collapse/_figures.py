"""Mode-collapse figures: entropy histograms, reliability diagrams, number distributions."""

from __future__ import annotations

from collections import Counter

import numpy as np

from ...report import plt
from ._core import reliability_bins


def entropy_histograms(text: str, by_model: dict[str, list[dict]]):
    """Per-token entropy (nats) and entropy per character of the predicted token, overlaid."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for model, rows in by_model.items():
        h = np.array([r["entropy"] for r in rows])
        c = np.array([max(r["chars"], 1) for r in rows])
        axes[0].hist(h, bins=40, density=True, histtype="step", linewidth=1.4, label=f"{model} (mean {h.mean():.2f})")
        axes[1].hist(h / c, bins=40, density=True, histtype="step", linewidth=1.4,
                     label=f"{model} (total/chars {h.sum() / c.sum():.3f})")
    axes[0].set_xlabel("next-token entropy (nats)")
    axes[1].set_xlabel("entropy / characters of the token (nats per char)")
    for ax in axes:
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    fig.suptitle(text, fontsize=10)
    fig.tight_layout()
    return fig


def reliability(sources: dict[str, dict[str, tuple[list[float], list[bool]]]], n_bins: int):
    """One panel per source (a text, or the multiple-choice set); one line per model."""
    fig, axes = plt.subplots(1, len(sources), figsize=(3.8 * len(sources), 3.6), squeeze=False)
    for ax, (source, models) in zip(axes[0], sources.items()):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
        for model, (conf, ok) in models.items():
            bins = [b for b in reliability_bins(conf, ok, n_bins) if b.count]
            ax.plot([b.confidence for b in bins], [b.accuracy for b in bins], marker="o", label=model)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("top-1 probability")
        ax.set_title(source, fontsize=9)
    axes[0, 0].set_ylabel("accuracy")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def number_distribution(by_model: dict[str, list[int]], low: int, high: int):
    """Counts of each parsed answer, with the count a uniform answer would give."""
    fig, axes = plt.subplots(len(by_model), 1, figsize=(10, 2.4 * len(by_model)), squeeze=False, sharex=True)
    xs = np.arange(low, high + 1)
    for ax, (model, values) in zip(axes[:, 0], by_model.items()):
        counts = Counter(values)
        ax.bar(xs, [counts.get(int(x), 0) for x in xs], width=0.9)
        if values:
            ax.axhline(len(values) / len(xs), color="grey", linestyle="--", linewidth=0.8, label="uniform")
            ax.legend(fontsize=7)
        ax.set_ylabel("answers")
        ax.set_title(f"{model}: {len(values)} parsed answers", fontsize=9)
    axes[-1, 0].set_xlabel("answer")
    fig.tight_layout()
    return fig
