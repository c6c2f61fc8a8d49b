"""Numbers as text, one set of formatters for reports, console tables and captions."""

from __future__ import annotations

from typing import Any


def fmt(v: Any) -> Any:
    """A value for an HTML table: floats to 4 significant digits, None and NaN as a dash; the rest as is."""
    if v is None:
        return "–"
    if isinstance(v, float):
        if v != v:  # NaN
            return "–"
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    return v


def console_cell(v: Any) -> str:
    """A value for the end-of-run console table: floats to 2 decimals, None as a dash."""
    if isinstance(v, float):
        return f"{v:.2f}"
    return "–" if v is None else str(v)


def pct(x: float | None, digits: int = 1) -> str | None:
    """A share as a percentage (``0.123`` -> ``12.3%``); None stays None; never "-0.0%"."""
    return None if x is None else f"{round(100 * x, digits) + 0.0:.{digits}f}%"


def num(x: float | None, digits: int = 3) -> str | None:
    """A number with fixed decimals; None stays None."""
    return None if x is None else f"{x:.{digits}f}"


def interval(low: float | None, high: float | None, digits: int = 3) -> str:
    """``[low, high]`` to ``digits`` significant digits, or "" when there is no interval."""
    if low is None or high is None:
        return ""
    return f"[{low:.{digits}g}, {high:.{digits}g}]"


def short(s: str, n: int = 32) -> str:
    """A string cut to ``n`` characters with an ellipsis."""
    return s if len(s) <= n else s[: n - 1] + "…"
