"""Figures: matplotlib set up once for files (no screen), and the plot shapes several
experiments draw."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # figures are written to files; there is no screen
import matplotlib.pyplot as plt  # noqa: E402


def heatmap(
    ax,
    matrix,
    xlabels,
    ylabels,
    title: str,
    vmin=None,
    vmax=None,
    cmap: str = "viridis",
    colorbar: bool = True,
    values: float | None = None,
):
    """A labelled matrix (rows bottom-up) on ``ax``, with a colour bar. ``values``: the font size
    to write each cell's value in (two decimals; NaN cells stay blank), None for no values."""
    im = ax.imshow(matrix, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, origin="lower")
    if values is not None:
        lo, hi = im.get_clim()
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                if v == v:  # not NaN
                    dark = v < lo + 0.6 * (hi - lo)  # the low end of viridis is dark: white text there
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if dark else "black",
                            fontsize=values)  # fmt: skip
    ax.set_xticks(range(len(xlabels)), xlabels, fontsize=7)
    ax.set_yticks(range(len(ylabels)), ylabels, fontsize=7)
    ax.set_title(title, fontsize=9)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.04)
    return im


__all__ = ["heatmap", "plt"]
