"""Reports: self-contained HTML with a summary table first and embedded figures."""

from ._report import Figure, Report, Section, Table

__all__ = ["Figure", "Report", "Section", "Table"]
