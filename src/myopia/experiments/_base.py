"""The central nouns: an :class:`Experiment` is a typed :class:`Spec`, the :class:`Cell` s it
expands to, and the typed :class:`Headline` (``summary.json``) and report it makes of their
results.

A cell is the unit of work that is saved as soon as it finishes: a (model x condition x seed)
combination. A run that is interrupted resumes at the first unfinished cell. The run machinery
that does this lives in :mod:`myopia.runs`; an experiment only says what to compute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, model_serializer, model_validator

from ..models import WhiteBoxModel


class Spec(BaseModel):
    """Base class of every experiment's spec: unknown fields are errors. ``experiment`` is the
    registered name (filled in from the registry, which names every experiment once)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    experiment_name: ClassVar[str] = ""  # set by the registry

    experiment: str = ""
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _named(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("experiment") and cls.experiment_name:
            return {**data, "experiment": cls.experiment_name}
        return data

    @model_validator(mode="after")
    def _same_name(self) -> "Spec":
        want = type(self).experiment_name
        if want and self.experiment != want:
            raise ValueError(f"experiment must be {want!r} for this spec, got {self.experiment!r}")
        return self


def _one_prompt_slot(v: str) -> str:
    if v.count("{prompt}") != 1:
        raise ValueError("frame must contain {prompt} exactly once")
    return v


Frame = Annotated[str, AfterValidator(_one_prompt_slot)]
"""A plain-text frame for base models: a string with exactly one ``{prompt}``."""


def slug(name: str, limit: int = 60) -> str:
    """A model spec or other name as a folder-safe cell id part (``lab:runs/x`` -> ``lab_runs_x``)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:limit]


@dataclass(frozen=True)
class Cell:
    id: str  # unique within the run, safe as a folder name
    model: str | None = None  # cells with the same model run back to back with one load
    params: dict[str, Any] = field(default_factory=dict)


Tables = dict[str, list[dict]]  # table name -> records
Progress = Callable[..., None]  # progress(advance=1, total=None, note=None)


class CellContext:
    """What a cell gets besides its spec: models (loaded once, shared by consecutive cells), a
    progress callback, and a private work directory (for checkpoints a cell trains; kept, so a
    resumed cell can pick up a half-trained model there)."""

    def __init__(
        self, model_pool, progress: Progress | None = None, work_dir: Path | None = None, placement=None
    ):
        self._pool = model_pool
        self.progress = progress or (lambda advance=1, total=None, note=None: None)
        self.work_dir = work_dir
        self.placement = placement  # a models.Placement: the run's device and dtype (None: the pool's default)

    @property
    def device(self) -> str:
        """The run's ``--device`` (``auto`` when the run gave none): where a cell places what it
        builds itself, e.g. the lab models it trains (:func:`myopia.lab.train_cell`) and loads."""
        return "auto" if self.placement is None else self.placement.device

    def model(self, spec: str):
        """The :class:`~myopia.models.LanguageModel` for a model spec, placed as the run says."""
        return self._pool.get(spec) if self.placement is None else self._pool.get(spec, self.placement)

    def white_box(self, spec: str, experiment: str) -> WhiteBoxModel:
        """The model as a :class:`~myopia.models.WhiteBoxModel`; a black-box model is refused with
        one line naming ``experiment``."""
        return self.model(spec).white_box(experiment)


class TableRow(BaseModel):
    """One row of an end-of-run table: each field is a column, titled by its ``title`` (or its
    name), in declaration order."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def header(cls) -> list[str]:
        return [f.title or name for name, f in cls.model_fields.items()]

    def cells(self) -> list[Any]:
        return [getattr(self, name) for name in type(self).model_fields]


class Sparse(BaseModel):
    """Headline figures with keys that apply only sometimes (a figure of one setting, a comparison
    that needs two models): a field left unset at None is absent from ``summary.json``, one set to
    None is written as null. Validating the file back gives the same keys. Mix it into a
    :class:`Headline` or use it for a nested entry."""

    model_config = ConfigDict(extra="forbid")

    @model_serializer(mode="wrap")
    def _leave_out_unset(self, handler):
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None or k in self.model_fields_set}


class Headline(BaseModel):
    """An experiment's headline figures: the schema of ``summary.json``. Subclasses declare the
    figures as typed fields and say which rows the end-of-run table shows (:meth:`rows`); the
    table's columns are those rows' fields."""

    model_config = ConfigDict(extra="forbid")

    experiment: str = ""
    spec_hash: str = ""

    def rows(self) -> list[TableRow]:
        return []

    def table(self) -> tuple[list[str], list[list[Any]]]:
        rows = self.rows()
        if not rows:
            return [], []
        return type(rows[0]).header(), [r.cells() for r in rows]


class Experiment:
    """One experiment, registered by name in :mod:`myopia.experiments._registry`.

    - ``spec_cls``: its typed spec, whose defaults are the published default experiment;
      ``summary_cls``: its typed headline; ``quick``: overrides for the quick suite (None = not
      in it), ``quick_order`` its place there; ``takes_gradients``: its pretrained models load in
      float32 whatever the run's ``--dtype`` (the exactness of its gradients is tested in float32);
    - ``cells(spec)``: the work; ``run_cell(cell, spec, ctx)``: one piece of it, returning tables
      of records; ``summarize`` and ``report``: from the merged tables only, so ``myopia report``
      can redo them without recomputing anything.
    """

    name: ClassVar[str] = ""  # set by the registry
    spec_cls: ClassVar[type[Spec]]
    summary_cls: ClassVar[type[Headline]]
    about: ClassVar[str] = ""  # one line, shown by `myopia run --help`
    quick: ClassVar[dict[str, Any] | None] = None
    quick_order: ClassVar[int] = 100
    takes_gradients: ClassVar[bool] = False

    def cells(self, spec: Spec) -> list[Cell]:
        raise NotImplementedError

    def check(self, spec: Spec) -> None:
        """Validate what the spec names (models, files) before any work starts."""

    def run_cell(self, cell: Cell, spec: Spec, ctx: CellContext) -> Tables:
        raise NotImplementedError

    def summarize(self, tables: Tables, spec: Spec) -> Headline:
        """The headline figures, from the merged tables alone."""
        raise NotImplementedError

    def report(self, tables: Tables, spec: Spec, summary: Headline, section) -> None:
        """Fill a :class:`myopia.report.Section` with tables and figures."""
