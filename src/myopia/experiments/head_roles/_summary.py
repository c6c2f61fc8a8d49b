"""The head-roles headline (``summary.json``) and end-of-run table, from the stored ``heads`` table
alone (one row per model, data set, layer and head: scores, clean loss and loss changes)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ...report import num
from .._base import Headline, TableRow, Tables
from ._ranking import top_group
from ._scores import SCORES
from ._spec import HeadRolesSpec


def by_model_data(rows: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """{model: {data set: rows sorted by (layer, head)}}."""
    out: dict[str, dict[str, list[dict]]] = {}
    for r in rows:
        out.setdefault(r["model"], {}).setdefault(r["data"], []).append(r)
    for per in out.values():
        for v in per.values():
            v.sort(key=lambda r: (r["layer"], r["head"]))
    return out


def matrix(rows: list[dict], key: str) -> list[list[float]]:
    """(layers x heads) nested list of one column."""
    n_layers = 1 + max(r["layer"] for r in rows)
    n_heads = 1 + max(r["head"] for r in rows)
    m = [[0.0] * n_heads for _ in range(n_layers)]
    for r in rows:
        m[r["layer"]][r["head"]] = r[key]
    return m


class RoleRow(TableRow):
    """One line of the end-of-run table: the top heads of one role on one data set."""

    model: str
    data: str
    heads: str
    score: str | None
    own: str | None = Field(title="Δ own")
    future: str | None = Field(title="Δ future")
    full: str | None = Field(title="Δ full")
    future_fraction: str | None = Field(title="future fraction")


class HeadGroup(BaseModel):
    """The top ``top_k`` heads of one role on one data set, and means over them. Loss changes are
    mean increases of the loss (nats/token, of the clean run's loss) when the head's output is
    removed; null where none of the heads was ablated."""

    model_config = ConfigDict(extra="forbid")

    heads: list[tuple[int, int]] = Field(description="[layer, head], both 0-based, best first")
    score: float | None = Field(description="their mean pattern score for the role (0..1)")
    own: float | None = Field(description="mean Δloss when removed from its own position's stream only")
    future: float | None = Field(description="mean Δloss when removed only from what later positions read")
    full: float | None = Field(description="mean Δloss when removed everywhere")
    future_fraction: float | None = Field(
        description="mean over the heads of Δfuture / (|Δown| + |Δfuture|): 1 = useful only to later positions"
    )


class DataRoles(BaseModel):
    """One model on one data set: every head's pattern scores and the two headline groups."""

    model_config = ConfigDict(extra="forbid")

    clean_loss: float = Field(description="mean next-token loss of the clean run on the scored positions (nats)")
    previous: list[list[float]] = Field(description="previous-token score, layers x heads (detect_head 'mul')")
    duplicate: list[list[float]] = Field(description="duplicate-token score, layers x heads")
    induction: list[list[float]] = Field(description="induction score, layers x heads")
    top_previous: HeadGroup = Field(description="the top previous-token heads (outside the last block)")
    top_induction: HeadGroup = Field(description="the top induction heads")


class ModelRoles(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="the model spec")
    data: dict[str, DataRoles] = Field(description="per data set: 'repeat', 'text', 'repeated-text'")


class HeadRolesSummary(Headline):
    """The headline of a head-roles run: per model and data set, head scores and the top heads' roles."""

    ablation: str = Field(description="what replaced a removed head's output: its 'mean' z, or 'zero'")
    top_k: int = Field(description="heads per role in each group")
    models: list[ModelRoles]

    def rows(self) -> list[RoleRow]:
        out = []
        for m in self.models:
            for data, d in m.data.items():
                for role, g in (("previous", d.top_previous), ("induction", d.top_induction)):
                    out.append(
                        RoleRow(
                            model=m.model,
                            data=data,
                            heads=f"{role}: " + " ".join(f"L{a}H{b}" for a, b in g.heads),
                            score=num(g.score, 2),
                            own=num(g.own),
                            future=num(g.future),
                            full=num(g.full),
                            future_fraction=num(g.future_fraction, 2),
                        )
                    )
        return out


def summarize(tables: Tables, spec: HeadRolesSpec) -> HeadRolesSummary:
    models = []
    for model, per_data in by_model_data(tables["heads"]).items():
        data = {
            name: DataRoles(
                clean_loss=rows[0]["clean_loss"],
                **{score: matrix(rows, score) for score in SCORES},
                top_previous=HeadGroup(**top_group(rows, "previous", spec.top_k)),
                top_induction=HeadGroup(**top_group(rows, "induction", spec.top_k)),
            )
            for name, rows in per_data.items()
        }
        models.append(ModelRoles(model=model, data=data))
    return HeadRolesSummary(ablation=spec.ablation, top_k=spec.top_k, models=models)
