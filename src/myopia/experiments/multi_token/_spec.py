"""The multi-token spec: three parts (path-star, addition, names), each a lab training setting
trained under several objectives (or answer formats) and seeds."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..._errors import UserError
from .._spec import Spec
from ..myopia_gap import TrainSetting, over_defaults

PARTS = ("path-star", "addition", "names")
FORMATS = ("plain", "reversed", "pause", "scratchpad")  # addition formats; an objective name means plain + it
CI = "95% t-interval over seeds (mean ± t(n-1)·sd/√n)"


def _check_objective(name: str) -> str:
    from ...objectives import get_objective

    try:
        get_objective(name)
    except UserError as e:
        raise ValueError(str(e)) from None
    return name


def _distinct(values: list, what: str) -> list:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} are listed twice")
    return values


class Graph(BaseModel):
    """One path-star graph family G(degree, path_len) with labels from 0..n_nodes-1."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    degree: int = Field(2, ge=2)
    path_len: int = Field(4, ge=2)
    n_nodes: int = Field(20, ge=3)

    @property
    def id(self) -> str:
        return f"G{self.degree}-{self.path_len}-N{self.n_nodes}"

    @property
    def label(self) -> str:
        return f"G({self.degree},{self.path_len}) N={self.n_nodes}"


class _Part(TrainSetting):
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    keep_weights: bool = Field(True, description="keep each cell's trained model (lab:DIR, with its mtp heads) in the run's work/")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if min(v) < 0:
            raise ValueError("seeds must be non-negative")
        return _distinct(v, "seeds")


class PathStarPart(_Part):
    """Bachmann & Nagarajan's graphs: every objective on every graph, with each seed."""

    task: dict[str, Any] = Field(default_factory=lambda: {"name": "path-star", "n_train": 50_000, "n_test": 2_000})
    graphs: list[Graph] = Field(default_factory=lambda: [Graph(degree=2), Graph(degree=3)], min_length=1)
    objectives: list[str] = Field(
        default_factory=lambda: ["ntp", "reverse", "teacherless", "mtp:2", "mtp:4", "mtp-seq:2"], min_length=1
    )

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str]) -> list[str]:
        return _distinct([_check_objective(o) for o in v], "objectives")

    @field_validator("graphs")
    @classmethod
    def _graphs(cls, v: list[Graph]) -> list[Graph]:
        return _distinct(v, "graphs")


class AdditionPart(_Part):
    """One fixed-depth model on n-digit addition (a mix of n in min_digits..n_digits), per format."""

    task: dict[str, Any] = Field(default_factory=lambda: {"name": "addition", "n_digits": 6, "min_digits": 2})
    formats: list[str] = Field(
        default_factory=lambda: ["plain", "reversed", "pause", "scratchpad", "mtp:2"],
        min_length=1,
        description=f"{', '.join(FORMATS)}, or an objective name (mtp:2, mtp-seq:2, ...) trained on the plain format",
    )
    pauses: int = Field(4, ge=1, le=64, description="k: <pause> tokens of the 'pause' format")
    mtp_from_trunk: bool = Field(
        False, description="multi-token formats: take their heads from the model's layers (false: add them, so the model keeps its depth)"
    )

    @field_validator("formats")
    @classmethod
    def _formats(cls, v: list[str]) -> list[str]:
        for f in v:
            if f not in FORMATS:
                try:
                    _check_objective(f)
                except ValueError as e:
                    raise ValueError(f"format {f!r} is none of {', '.join(FORMATS)} and not an objective: {e}") from None
        return _distinct(v, "formats")

    def format_task(self, fmt: str) -> tuple[dict[str, Any], str, dict[str, Any]]:
        """(task config, objective, extra lab fields) of one format."""
        task = {k: v for k, v in self.task.items() if k not in ("format", "pauses")}
        if fmt == "pause":
            return {**task, "format": "plain", "pauses": self.pauses}, "ntp", {}
        if fmt in FORMATS:
            return {**task, "format": fmt}, "ntp", {}
        return {**task, "format": "plain"}, fmt, {"mtp_from_trunk": self.mtp_from_trunk}


class NamesPart(_Part):
    """Two-token names in the plays: next-token vs multi-token objectives at equal parameters."""

    task: dict[str, Any] = Field(
        default_factory=lambda: {"name": "shakespeare-names", "seq_len": 64, "repeat": 0.5, "eval_windows": 1000}
    )
    objectives: list[str] = Field(default_factory=lambda: ["ntp", "mtp:2", "mtp-seq:2"], min_length=1)

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str]) -> list[str]:
        return _distinct([_check_objective(o) for o in v], "objectives")


def _path_star() -> PathStarPart:
    # GPT-2 style (learned positions: the Clever-Hans plateau by ~500 steps where the lab's Llama needs
    # ~6,000, DESIGN.md), 5 layers so that parameter-matched mtp:4 keeps a 2-layer next-token model
    return PathStarPart(model="gpt2-tiny", model_overrides={"n_layer": 5}, steps=1000, batch_size=128, lr=1e-3,
                        schedule="constant", eval_every=250, eval_batches=2, chunk=500, train={"warmup_steps": 100})


def _addition() -> AdditionPart:
    return AdditionPart(model="llama-tiny", steps=3000, batch_size=128, lr=3e-3, schedule="one-cycle",
                        eval_every=1000, eval_batches=2, chunk=1000)


def _names() -> NamesPart:
    return NamesPart(model="llama-tiny", model_overrides={"n_layer": 4, "n_head": 4}, steps=1500, batch_size=32, lr=3e-3,
                     schedule="constant", eval_every=250, eval_batches=4, chunk=500, train={"warmup_steps": 100})


DEFAULTS = {"path_star": _path_star, "addition": _addition, "names": _names}


class MultiTokenSpec(Spec):
    experiment: str = "multi-token"
    parts: list[str] = Field(default_factory=lambda: list(PARTS), min_length=1)
    path_star: PathStarPart = Field(default_factory=_path_star)
    addition: AdditionPart = Field(default_factory=_addition)
    names: NamesPart = Field(default_factory=_names)
    threads: int = Field(1, ge=1, description="torch threads per training (DESIGN.md: one is fastest on 2 shared cores)")

    @field_validator("path_star", "addition", "names", mode="before")
    @classmethod
    def _over_defaults(cls, v: Any, info) -> Any:
        """A partial table (``--set addition.steps=10``) overrides that part's own defaults."""
        return over_defaults(DEFAULTS[info.field_name], v)

    @field_validator("parts")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [p for p in v if p not in PARTS]
        if bad:
            raise ValueError(f"unknown part(s) {', '.join(bad)}; accepted: {', '.join(PARTS)}")
        return _distinct(v, "parts")

    @model_validator(mode="after")
    def _lab_configs(self) -> "MultiTokenSpec":
        """Every cell's lab config is valid (parameter matching needs enough layers, ...)."""
        from .._myopia_gap_train import train_config

        for setting, objective in self.trainings():
            try:
                train_config(setting, objective, 0, None, None).resolved()  # resolved: parameter matching checked
            except UserError as e:
                raise ValueError(str(e)) from None
        return self

    def trainings(self) -> list[tuple[TrainSetting, str]]:
        """(the setting with its task filled in, objective) of every (part, condition), seeds aside."""
        out = []
        if "path-star" in self.parts:
            for g in self.path_star.graphs:
                out += [(graph_setting(self.path_star, g), o) for o in self.path_star.objectives]
        if "addition" in self.parts:
            out += [format_setting(self.addition, f) for f in self.addition.formats]
        if "names" in self.parts:
            out += [(self.names, o) for o in self.names.objectives]
        return out


def graph_setting(part: PathStarPart, graph: Graph) -> TrainSetting:
    return part.model_copy(update={"task": {**part.task, **graph.model_dump()}})


def format_setting(part: AdditionPart, fmt: str) -> tuple[TrainSetting, str]:
    task, objective, extra = part.format_task(fmt)
    return part.model_copy(update={"task": task, "train": {**part.train, **extra}}), objective
