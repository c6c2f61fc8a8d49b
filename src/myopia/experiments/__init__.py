"""Experiments: registered by name, each a typed spec expanded into cells, ending in a report."""

from ._base import Cell, CellContext, Experiment, experiment_names, get_experiment, register
from ._runner import RunResult, load_run, rerender, resolve_spec, run
from ._spec import Spec
from ._suite import run_suite, suites

__all__ = [
    "Cell",
    "CellContext",
    "Experiment",
    "RunResult",
        "Spec",
    "experiment_names",
    "get_experiment",
    "load_run",
    "register",
    "rerender",
    "resolve_spec",
    "run",
    "run_suite",
    "suites",
]
