"""The multi-token spec: three parts (path-star, addition, names), each a lab training setting
trained under several objectives (or answer formats) and seeds; the quick-suite overrides."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..._errors import UserError
from ...lab import TrainSetting, over_defaults, train_config
from ...objectives import get_objective
from .._base import Spec
from ._drafting import DraftingSpec

PARTS = ("path-star", "addition", "names")
FORMATS = ("plain", "reversed", "pause", "scratchpad")  # addition formats; an objective name means plain + it


def _check_objective(name: str) -> str:
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

    degree: int = Field(2, ge=2, description="d: arms of the star")
    path_len: int = Field(
        4, ge=3, description="l: nodes on a source-to-leaf path, source included (l = 2: no hard step)"
    )
    n_nodes: int = Field(20, ge=3, description="N: labels are drawn from 0..N-1")

    @property
    def id(self) -> str:
        return f"G{self.degree}-{self.path_len}-N{self.n_nodes}"

    @property
    def label(self) -> str:
        return f"G({self.degree},{self.path_len}) N={self.n_nodes}"


class _Part(TrainSetting):
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    keep_weights: bool = Field(
        True, description="keep each cell's trained model (lab:DIR, with its mtp heads) in the run's work/"
    )

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if min(v) < 0:
            raise ValueError("seeds must be non-negative")
        return _distinct(v, "seeds")


class PathStarPart(_Part):
    """Bachmann & Nagarajan's graphs: every objective on every graph family, with each seed."""

    task: dict[str, Any] = Field(
        default_factory=lambda: {"name": "path-star", "n_train": 50_000, "n_test": 2_000},
        description="the path-star task's other fields (degree, path_len, n_nodes come from graphs)",
    )
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

    @field_validator("task")
    @classmethod
    def _path_star(cls, v: dict[str, Any]) -> dict[str, Any]:
        if v.get("name") not in ("path-star", "path-star-paper"):
            raise ValueError(f"task.name must be 'path-star' or 'path-star-paper', got {v.get('name')!r}")
        return v

    def graph_setting(self, graph: Graph) -> TrainSetting:
        """This part's setting with the task of one graph family."""
        return TrainSetting(**self._setting_fields(), task={**self.task, **graph.model_dump()})

    def _setting_fields(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in TrainSetting.model_fields if k != "task"}


class AdditionPart(_Part):
    """One fixed-depth model per answer format on a mix of n-digit sums (n from min_digits to n_digits)."""

    task: dict[str, Any] = Field(
        default_factory=lambda: {"name": "addition", "n_digits": 6, "min_digits": 2},
        description="the addition task's other fields (format and pauses come from formats)",
    )
    formats: list[str] = Field(
        default_factory=lambda: ["plain", "reversed", "pause", "scratchpad", "mtp:2"],
        min_length=1,
        description=f"{', '.join(FORMATS)}, or an objective name (mtp:2, mtp-seq:2, ...) trained on the plain format",
    )
    pauses: int = Field(4, ge=1, le=64, description="k: <pause> tokens of the 'pause' format")
    mtp_from_trunk: bool = Field(
        False,
        description="multi-token formats: take their heads from the model's layers "
        "(false: add them, so the next-token model keeps its depth)",
    )

    @field_validator("formats")
    @classmethod
    def _formats(cls, v: list[str]) -> list[str]:
        for f in v:
            if f not in FORMATS:
                try:
                    _check_objective(f)
                except ValueError as e:
                    raise ValueError(
                        f"format {f!r} is none of {', '.join(FORMATS)} and not an objective: {e}"
                    ) from None
        return _distinct(v, "formats")

    @field_validator("task")
    @classmethod
    def _addition(cls, v: dict[str, Any]) -> dict[str, Any]:
        if v.get("name") != "addition":
            raise ValueError(f"task.name must be 'addition', got {v.get('name')!r}")
        for key in ("format", "pauses"):
            if key in v:
                raise ValueError(f"task.{key} is set per format: use addition.formats (and addition.pauses)")
        return v

    def format_setting(self, fmt: str) -> tuple[TrainSetting, str]:
        """(the setting of one format, its objective)."""
        fields = {k: getattr(self, k) for k in TrainSetting.model_fields if k not in ("task", "train")}
        if fmt == "pause":
            task, objective, extra = {**self.task, "format": "plain", "pauses": self.pauses}, "ntp", {}
        elif fmt in FORMATS:
            task, objective, extra = {**self.task, "format": fmt}, "ntp", {}
        else:
            task, objective, extra = {**self.task, "format": "plain"}, fmt, {"mtp_from_trunk": self.mtp_from_trunk}
        return TrainSetting(**fields, task=task, train={**self.train, **extra}), objective


class NamesPart(_Part):
    """Two-token names in the plays: next-token vs multi-token objectives at equal parameters."""

    task: dict[str, Any] = Field(
        default_factory=lambda: {"name": "shakespeare-names", "seq_len": 64, "repeat": 0.5, "eval_windows": 1000},
        description="the shakespeare-names task's fields",
    )
    objectives: list[str] = Field(default_factory=lambda: ["ntp", "mtp:2", "mtp-seq:2"], min_length=1)

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str]) -> list[str]:
        return _distinct([_check_objective(o) for o in v], "objectives")

    @field_validator("task")
    @classmethod
    def _names(cls, v: dict[str, Any]) -> dict[str, Any]:
        if v.get("name") != "shakespeare-names":
            raise ValueError(f"task.name must be 'shakespeare-names', got {v.get('name')!r}")
        return v

    def setting(self) -> TrainSetting:
        return TrainSetting(**{k: getattr(self, k) for k in TrainSetting.model_fields})


def _path_star() -> PathStarPart:
    # GPT-2 style (learned positions reach the Clever-Hans plateau by ~500 steps where the lab's Llama
    # needs ~6,000, DESIGN.md); 5 layers, so that parameter-matched mtp:4 keeps a 2-layer next-token model
    return PathStarPart(
        model="gpt2-tiny",
        model_overrides={"n_layer": 5},
        steps=1500,
        batch_size=128,
        lr=1e-3,
        schedule="constant",
        eval_every=250,
        eval_batches=2,
        chunk=500,
        train={"warmup_steps": 100},
    )


def _addition() -> AdditionPart:
    return AdditionPart(
        model="llama-tiny",
        steps=3000,
        batch_size=128,
        lr=3e-3,
        schedule="one-cycle",
        eval_every=500,
        eval_batches=2,
        chunk=1000,
    )


def _names() -> NamesPart:
    return NamesPart(
        model="llama-tiny",
        model_overrides={"n_layer": 4, "n_head": 4},
        steps=1500,
        batch_size=32,
        lr=3e-3,
        schedule="constant",
        eval_every=250,
        eval_batches=4,
        chunk=500,
        train={"warmup_steps": 100},
    )


_DEFAULTS = {"path_star": _path_star, "addition": _addition, "names": _names}


class MultiTokenSpec(Spec):
    parts: list[str] = Field(default_factory=lambda: list(PARTS), min_length=1)
    path_star: PathStarPart = Field(default_factory=_path_star)
    addition: AdditionPart = Field(default_factory=_addition)
    names: NamesPart = Field(default_factory=_names)
    threads: int = Field(
        1, ge=1, description="torch threads per training (DESIGN.md: one is fastest on 2 shared cores)"
    )
    drafting: DraftingSpec = Field(
        default_factory=DraftingSpec, description="decoding with drafts on the mtp:n / mtp-seq:n cells' models"
    )

    @field_validator("path_star", "addition", "names", mode="before")
    @classmethod
    def _over_defaults(cls, v: Any, info) -> Any:
        """A partial table (``--set addition.steps=10``) overrides that part's own defaults."""
        return over_defaults(_DEFAULTS[info.field_name], v)

    @field_validator("parts")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [p for p in v if p not in PARTS]
        if bad:
            raise ValueError(f"unknown part(s) {', '.join(bad)}; accepted: {', '.join(PARTS)}")
        return _distinct(v, "parts")

    @model_validator(mode="after")
    def _lab_configs(self) -> "MultiTokenSpec":
        """Every training's lab config is valid, parameter matching included (``resolved``)."""
        for (part, condition), (setting, objective) in self.trainings().items():
            try:
                train_config(setting, objective, 0, None, None).resolved()
            except UserError as e:
                raise ValueError(f"{part} {condition} {objective}: {e}") from None
        return self

    def trainings(self) -> dict[tuple[str, str], tuple[TrainSetting, str]]:
        """(part, condition) -> (setting, objective) of every training the parts list, seeds aside; a
        condition is a graph id with an objective (path-star), a format (addition) or an objective (names)."""
        out: dict[tuple[str, str], tuple[TrainSetting, str]] = {}
        if "path-star" in self.parts:
            for g in self.path_star.graphs:
                for o in self.path_star.objectives:
                    out[("path-star", f"{g.id}/{o}")] = (self.path_star.graph_setting(g), o)
        if "addition" in self.parts:
            for f in self.addition.formats:
                out[("addition", f)] = self.addition.format_setting(f)
        if "names" in self.parts:
            for o in self.names.objectives:
                out[("names", o)] = (self.names.setting(), o)
        return out

    def part(self, name: str) -> _Part:
        return {"path-star": self.path_star, "addition": self.addition, "names": self.names}[name]


QUICK = {  # one thread: path-star G(2,3) ntp vs reverse, addition n=3 plain vs reversed, one seed (README: measured)
    "parts": ["path-star", "addition"],
    "path_star.graphs": [{"degree": 2, "path_len": 3, "n_nodes": 20}],
    "path_star.objectives": ["ntp", "reverse"],
    "path_star.model_overrides": {"n_layer": 4},
    "path_star.task": {"name": "path-star", "n_train": 50_000, "n_test": 500},
    "path_star.seeds": [0],
    "path_star.steps": 500,
    "path_star.eval_every": 250,
    "addition.task": {"name": "addition", "n_digits": 3, "n_test": 500},
    "addition.formats": ["plain", "reversed"],
    "addition.seeds": [0],
    "addition.steps": 600,
    "addition.eval_every": 300,
}
