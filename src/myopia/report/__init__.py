"""Reports: self-contained HTML with a summary table first and embedded figures; the plotting
set-up and the number formatters every experiment uses."""

from ._format import console_cell, fmt, interval, num, pct, short
from ._plot import heatmap, plt
from ._report import Figure, Report, Section, Table

__all__ = [
    "Figure", "Report", "Section", "Table", "console_cell", "fmt", "heatmap", "interval", "num", "pct", "plt", "short",
]
