"""Reports: one self-contained HTML file (figures embedded as PNG), summary table first.

Everything that comes from a model is text, and the template escapes it (jinja2
autoescape): a completion containing ``<script>`` shows as text.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import jinja2

from ._format import fmt


@dataclass
class Table:
    header: list[str]
    rows: list[list[Any]]
    caption: str = ""


@dataclass
class Figure:
    png_base64: str
    caption: str = ""


@dataclass
class Section:
    """A part of a report: an experiment's tables, figures and notes, in order."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def text(self, paragraph: str) -> None:
        self.blocks.append(("text", paragraph))

    def code(self, text: str, caption: str = "") -> None:
        self.blocks.append(("code", (caption, text)))

    def table(self, header: list[str], rows: list[list[Any]], caption: str = "") -> None:
        self.blocks.append(("table", Table(header, [[fmt(v) for v in r] for r in rows], caption)))

    def figure(self, fig, caption: str = "") -> None:
        """Embed a matplotlib figure (closed afterwards)."""
        from ._plot import plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.blocks.append(("figure", Figure(base64.b64encode(buf.getvalue()).decode(), caption)))


@dataclass
class Report:
    title: str
    summary: Table | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        s = Section(title)
        self.sections.append(s)
        return s

    def render(self) -> str:
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("myopia.report", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        return env.get_template("report.html.j2").render(
            report=self,
            generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        )

