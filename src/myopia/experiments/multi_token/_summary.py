"""The multi-token headline (the schema of ``summary.json``) and the end-of-run table, from the
stored tables alone."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .._base import Tables
from .._myopia_gap_train import t_interval
from ._clever_hans import diagnose, escapes_chance
from ._spec import CI, MultiTokenSpec


class Interval(BaseModel):
    """Mean over seeds and its 95% t-interval (no interval for one seed)."""

    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int

    @classmethod
    def of(cls, values: list[float | None]) -> "Interval":
        return cls(**t_interval([v for v in values if v is not None]))

    def text(self, digits: int = 2) -> str:
        if self.mean is None:
            return "n/a"
        if self.ci_low is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.ci_low:.{digits}f}, {self.ci_high:.{digits}f}]"


class PathStarResult(BaseModel):
    graph: str  # e.g. G2-4-N20
    degree: int
    objective: str
    chance: float  # 1/d
    accuracy: Interval  # whole path, greedy
    first_step: Interval  # the node after the source, greedy
    later_teacher_forced: Interval  # teacher-forced accuracy after the first hard step
    escapes_chance: bool | None
    diagnosis: str  # solved / escapes 1/d / Clever Hans / not converged / below chance


class AdditionResult(BaseModel):
    format: str  # plain, reversed, pause, scratchpad, or an objective on the plain format
    objective: str
    n_digits: int
    accuracy: Interval  # exact match, greedy
    first_digit: Interval  # the most significant answer digit


class NamesResult(BaseModel):
    objective: str
    name_accuracy: Interval  # second token of a name at its repeat mentions
    name_accuracy_first: Interval  # at first mentions (the control)
    eval_loss: Interval  # next-token loss on held-out text (nats per token)
    n_params: int  # non-embedding parameters, extra heads and projections included


class MultiTokenSummary(BaseModel):
    path_star: list[PathStarResult]
    addition: list[AdditionResult]
    names: list[NamesResult]
    ci: str


def _groups(records: list[dict], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in records:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def summarize(tables: Tables, spec: MultiTokenSpec) -> MultiTokenSummary:
    finals = tables.get("finals", [])
    path_star = []
    for (graph, objective), recs in _groups([r for r in finals if r["part"] == "path-star"], ("condition", "objective")).items():
        d = int(recs[0]["degree"])
        acc = Interval.of([r["accuracy"] for r in recs])
        first = Interval.of([r["first_step_accuracy"] for r in recs])
        later = Interval.of([r["later_teacher_forced"] for r in recs])
        path_star.append(PathStarResult(
            graph=graph, degree=d, objective=objective, chance=1 / d, accuracy=acc, first_step=first,
            later_teacher_forced=later, escapes_chance=escapes_chance(acc.model_dump(), d),
            diagnosis=diagnose(acc.model_dump(), first.model_dump(), later.model_dump(), d),
        ))
    addition = [
        AdditionResult(format=fmt, objective=recs[0]["objective"], n_digits=n,
                       accuracy=Interval.of([r["accuracy"] for r in recs]),
                       first_digit=Interval.of([r["first_digit_accuracy"] for r in recs]))
        for (fmt, n), recs in _groups(tables.get("digits", []), ("condition", "n_digits")).items()
    ]
    params = {(r["objective"]): r["n_params"] for r in finals if r["part"] == "names"}
    names = [
        NamesResult(objective=objective, name_accuracy=Interval.of([r["name_accuracy"] for r in recs]),
                    name_accuracy_first=Interval.of([r["name_accuracy_first"] for r in recs]),
                    eval_loss=Interval.of([r["eval_loss"] for r in recs]), n_params=int(params.get(objective, 0)))
        for (objective,), recs in _groups(tables.get("names", []), ("objective",)).items()
    ]
    return MultiTokenSummary(path_star=path_star, addition=addition, names=names, ci=CI)


def summary_rows(summary: dict) -> tuple[list[str], list[list[Any]]]:
    """One line per (part, condition, objective): the headline metric with its interval."""
    s = MultiTokenSummary.model_validate(summary)
    header = ["part", "condition", "objective", "metric", "mean [95% CI]", "also"]
    rows: list[list[Any]] = []
    for r in s.path_star:
        rows.append(["path-star", r.graph, r.objective, "whole path", r.accuracy.text(),
                     f"first step {r.first_step.text()}; 1/d = {r.chance:.2f}: {r.diagnosis}"])
    for r in s.addition:
        rows.append(["addition", f"{r.format}, n={r.n_digits}", r.objective, "exact match", r.accuracy.text(),
                     f"first digit {r.first_digit.text()}"])
    for r in s.names:
        rows.append(["names", "held-out plays", r.objective, "2nd token at repeats", r.name_accuracy.text(),
                     f"first mentions {r.name_accuracy_first.text()}; eval loss {r.eval_loss.text(3)}"])
    return header, rows
