"""The multi-token headline (``summary.json``): per part, condition and objective the metrics as a
mean with its 95% t-interval over seeds, and path-star's Clever-Hans diagnosis; from the merged
tables alone."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ...objectives import get_objective
from ...report import interval
from ...stats import T_INTERVAL, t_interval
from .._base import Headline, TableRow, Tables
from ._clever_hans import diagnose, escapes_chance
from ._spec import MultiTokenSpec

CI = f"{T_INTERVAL}; accuracies clipped to [0, 1]"


class Interval(BaseModel):
    """A mean over seeds with its 95% t-interval (mean ± t(n-1)·sd/√n); no interval for one seed
    (``ci_low``/``ci_high`` null)."""

    model_config = ConfigDict(extra="forbid")

    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int = Field(description="seeds in the mean")

    @classmethod
    def of(cls, values: list[float | None]) -> "Interval":
        return cls(**t_interval(values))

    @classmethod
    def share(cls, values: list[float | None]) -> "Interval":
        """An accuracy's: the interval clipped to [0, 1]."""
        return cls(**t_interval(values, bounds=(0.0, 1.0)))

    def text(self, digits: int = 2) -> str:
        if self.mean is None:
            return "n/a"
        ci = interval(self.ci_low, self.ci_high, digits)
        return f"{self.mean:.{digits}f}" + (f" {ci}" if ci else "")


class PathStarObjective(BaseModel):
    """One objective on one graph family."""

    model_config = ConfigDict(extra="forbid")

    accuracy: Interval = Field(description="whole path right under greedy generation")
    first_step: Interval = Field(description="the node after the source right under greedy generation")
    later_teacher_forced: Interval = Field(
        description="teacher-forced accuracy at the path positions after the first hard step (2 .. l-1)"
    )
    escapes_chance: bool | None = Field(
        description="whole-path accuracy above 1/d (the interval's lower end; one seed: the mean 0.05 above)"
    )
    diagnosis: str = Field(
        description="solved / escapes 1/d / Clever Hans / not converged / not learned (teacherless) / no result"
    )


class PathStarGraph(BaseModel):
    model_config = ConfigDict(extra="forbid")

    degree: int
    path_len: int
    n_nodes: int
    chance: float = Field(description="1/d: a guess among the arms at the first step")
    objectives: dict[str, PathStarObjective] = Field(description="objective -> its figures, in the spec's order")


class AdditionDigits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accuracy: Interval = Field(description="exact match under greedy generation")
    first_digit: Interval = Field(description="the most significant answer digit (it depends on every carry)")
    by_position: list[Interval] = Field(
        default_factory=list, description="each of the n + 1 answer digits' accuracy, the most significant first"
    )


class AdditionFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objective: str = Field(description="ntp, or the multi-token objective trained on the plain format")
    by_digits: dict[int, AdditionDigits] = Field(description="n -> figures on n-digit sums")


class NamesObjective(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name_accuracy: Interval = Field(description="second token of a two-token name at its repeat mentions")
    name_accuracy_first: Interval = Field(description="the same at first mentions (the control: nothing to copy)")
    head1_loss: Interval = Field(description="head 1's (the next-token model's) loss on held-out text, nats/token")
    n_params: int = Field(description="non-embedding parameters, extra heads and depth modules included")


class MultiTokenRow(TableRow):
    part: str
    condition: str
    objective: str
    metric: str
    mean: float | None = Field(None, title="mean")
    ci: str = Field("", title="95% CI")
    note: str = Field("", title="also")


class MultiTokenHeadline(Headline):
    path_star: dict[str, PathStarGraph] = Field(description="graph id (G2-4-N20) -> per objective figures")
    addition: dict[str, AdditionFormat] = Field(description="format -> exact-match accuracy by digits")
    names: dict[str, NamesObjective] = Field(description="objective -> name induction and head 1's held-out loss")
    clever_hans: list[str] = Field(
        description="path-star: '<graph> <objective>' of every objective diagnosed as Clever Hans"
    )
    ci: str = Field(description="what the intervals are")

    def rows(self) -> list[MultiTokenRow]:
        rows = []
        for graph, g in self.path_star.items():
            for obj, f in g.objectives.items():
                note = f"first step {f.first_step.text()}; 1/d = {g.chance:.2f}; {f.diagnosis}"
                rows.append(_row("path-star", graph, obj, "whole path", f.accuracy, note))
        for fmt, a in self.addition.items():
            for n, d in a.by_digits.items():
                note = f"first digit {d.first_digit.text()}"
                rows.append(_row("addition", f"{fmt}, n={n}", a.objective, "exact match", d.accuracy, note))
        for obj, r in self.names.items():
            note = f"first mentions {r.name_accuracy_first.text()}; head-1 loss {r.head1_loss.text(3)}"
            rows.append(_row("names", "held-out plays", obj, "2nd token at repeats", r.name_accuracy, note))
        return rows


def _row(part: str, condition: str, objective: str, metric: str, iv: Interval, note: str) -> MultiTokenRow:
    return MultiTokenRow(
        part=part, condition=condition, objective=objective, metric=metric, mean=iv.mean,
        ci=interval(iv.ci_low, iv.ci_high), note=note,
    )  # fmt: skip


def _groups(records: list[dict], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in records:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def summarize(tables: Tables, spec: MultiTokenSpec) -> MultiTokenHeadline:
    path_star = _path_star(tables.get("finals", []), spec)
    hans = [
        f"{g} {o}" for g, fig in path_star.items() for o, f in fig.objectives.items() if f.diagnosis == "Clever Hans"
    ]
    return MultiTokenHeadline(
        path_star=path_star,
        addition=_addition(tables.get("digits", []), tables.get("answer_digits", []), spec),
        names=_names(tables.get("names", []), tables.get("finals", []), spec),
        clever_hans=hans,
        ci=CI,
    )


def _path_star(finals: list[dict], spec: MultiTokenSpec) -> dict[str, PathStarGraph]:
    groups = _groups([r for r in finals if r["part"] == "path-star"], ("condition", "objective"))
    out = {}
    for g in spec.path_star.graphs:
        objectives = {}
        for o in spec.path_star.objectives:
            recs = groups.get((g.id, o))
            if not recs:
                continue
            acc = Interval.share([r["accuracy"] for r in recs])
            first = Interval.share([r["first_step_accuracy"] for r in recs])
            later = Interval.share([r["later_teacher_forced"] for r in recs])
            objectives[o] = PathStarObjective(
                accuracy=acc,
                first_step=first,
                later_teacher_forced=later,
                escapes_chance=escapes_chance(acc.model_dump(), g.degree),
                diagnosis=diagnose(acc.model_dump(), later.model_dump(), g.degree, _teacher_forced(o)),
            )
        if objectives:
            out[g.id] = PathStarGraph(
                degree=g.degree, path_len=g.path_len, n_nodes=g.n_nodes, chance=1 / g.degree, objectives=objectives
            )
    return out


def _teacher_forced(objective: str) -> bool:
    """Whether training fed the true path (every objective but teacherless)."""
    return get_objective(objective).data_variant != "teacherless"


def _addition(digits: list[dict], answer_digits: list[dict], spec: MultiTokenSpec) -> dict[str, AdditionFormat]:
    groups = _groups(digits, ("condition", "n_digits"))
    positions = _groups(answer_digits, ("condition", "n_digits", "position"))
    out = {}
    for fmt in spec.addition.formats:
        ns = sorted(n for f, n in groups if f == fmt)
        if ns:
            by = {
                n: AdditionDigits(
                    accuracy=Interval.share([r["accuracy"] for r in groups[(fmt, n)]]),
                    first_digit=Interval.share([r["first_digit_accuracy"] for r in groups[(fmt, n)]]),
                    by_position=[
                        Interval.share([r["accuracy"] for r in positions[(fmt, n, j)]])
                        for j in range(n + 1)
                        if (fmt, n, j) in positions
                    ],
                )
                for n in ns
            }
            out[fmt] = AdditionFormat(objective=groups[(fmt, ns[0])][0]["objective"], by_digits=by)
    return out


def _names(names: list[dict], finals: list[dict], spec: MultiTokenSpec) -> dict[str, NamesObjective]:
    params = {r["objective"]: r["n_params"] for r in finals if r["part"] == "names"}
    groups = _groups(names, ("objective",))
    return {
        o: NamesObjective(
            name_accuracy=Interval.share([r["name_accuracy"] for r in groups[(o,)]]),
            name_accuracy_first=Interval.share([r["name_accuracy_first"] for r in groups[(o,)]]),
            head1_loss=Interval.of([r["eval_loss"] for r in groups[(o,)]]),
            n_params=int(params.get(o, 0)),
        )
        for o in spec.names.objectives
        if (o,) in groups
    }
