"""The central nouns: an :class:`Experiment` is a spec, the cells it expands to, and the
metrics and report it makes of their results.

A cell is the unit of work that is saved as soon as it finishes: a (model x condition x
seed) combination. A run that is interrupted resumes at the first unfinished cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._errors import UserError
from ._spec import Spec


@dataclass(frozen=True)
class Cell:
    id: str  # unique within the run, safe as a folder name
    model: str | None = None  # cells with the same model run back to back with one load
    params: dict[str, Any] = field(default_factory=dict)


Tables = dict[str, list[dict]]  # table name -> records


class Experiment:
    """Subclass and register with :func:`register`.

    - ``name``: what ``myopia run NAME`` accepts; ``spec_cls``: its typed spec, whose
      defaults are the published default experiment; ``quick``: overrides for the quick suite.
    - ``cells(spec)``: the work; ``run_cell(cell, spec, ctx)``: one piece of it, returning
      tables of records; ``summarize`` and ``report``: from the merged tables only, so
      ``myopia report`` can redo them without recomputing anything.
    """

    name: ClassVar[str]
    spec_cls: ClassVar[type[Spec]]
    summary: ClassVar[str] = ""  # one line, shown by `myopia run --help`
    quick: ClassVar[dict[str, Any] | None] = None  # overrides for the quick suite; None = not in it
    quick_order: ClassVar[int] = 100  # position in the quick suite

    def cells(self, spec: Spec) -> list[Cell]:
        raise NotImplementedError

    def check(self, spec: Spec) -> None:
        """Validate what the spec names (models, files) before any work starts."""

    def run_cell(self, cell: Cell, spec: Spec, ctx: "CellContext") -> Tables:
        raise NotImplementedError

    def summarize(self, tables: Tables, spec: Spec) -> dict:
        """Headline figures, machine-readable (written to summary.json)."""
        return {}

    def summary_rows(self, summary: dict) -> tuple[list[str], list[list[Any]]]:
        """(header, rows) of the one-screen table shown at the end of a run."""
        return [], []

    def report(self, tables: Tables, spec: Spec, summary: dict, section) -> None:
        """Fill a :class:`myopia.report.Section` with tables and figures."""


class CellContext:
    """What a cell gets besides its spec: the loaded model, a progress callback, and a
    private work directory (for checkpoints a cell trains; kept, so a resumed cell can
    pick up a half-trained model there)."""

    def __init__(self, model_pool, progress=None, work_dir=None):
        self._pool = model_pool
        self.progress = progress or (lambda advance=1, total=None, note=None: None)
        self.work_dir = work_dir

    def model(self, spec: str):
        return self._pool.get(spec)


_REGISTRY: dict[str, type[Experiment]] = {}


def register(cls: type[Experiment]) -> type[Experiment]:
    _REGISTRY[cls.name] = cls
    return cls


def get_experiment(name: str) -> Experiment:
    _load_builtin()
    if name not in _REGISTRY:
        raise UserError(f"unknown experiment {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()


def experiment_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    """Import every public module or package in myopia.experiments: each registers itself."""
    import importlib
    import pkgutil

    from .. import experiments

    for info in pkgutil.iter_modules(experiments.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{experiments.__name__}.{info.name}")
