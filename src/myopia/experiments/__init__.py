"""Experiments: each a typed spec expanded into cells, ending in a typed headline and a report.

One folder per experiment (``myopia.experiments.<name>``), registered by name in
:data:`EXPERIMENTS`; running them is :mod:`myopia.runs`' job.
"""

from ._base import Cell, CellContext, Experiment, Frame, Headline, Spec, TableRow, Tables, slug
from ._registry import EXPERIMENTS, experiment_names, get_experiment

__all__ = [
    "EXPERIMENTS",
    "Cell",
    "CellContext",
    "Experiment",
    "Frame",
    "Headline",
    "Spec",
    "TableRow",
    "Tables",
    "experiment_names",
    "get_experiment",
    "slug",
]
