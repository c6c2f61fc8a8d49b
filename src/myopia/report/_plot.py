"""Figures: matplotlib set up once for files (no screen), and the plot shapes several
experiments draw."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # figures are written to files; there is no screen
import matplotlib.pyplot as plt  # noqa: E402


def heatmap(
    ax, matrix, xlabels, ylabels, title: str, vmin=None, vmax=None, cmap: str = "viridis", colorbar: bool = True
):
    """A labelled matrix (rows bottom-up) on ``ax``, with a colour bar."""
    im = ax.imshow(matrix, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, origin="lower")
    ax.set_xticks(range(len(xlabels)), xlabels, fontsize=7)
    ax.set_yticks(range(len(ylabels)), ylabels, fontsize=7)
    ax.set_title(title, fontsize=9)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.04)
    return im


__all__ = ["heatmap", "plt"]
