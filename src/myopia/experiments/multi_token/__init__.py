"""``multi-token``: does an n-token objective plan where next-token training cannot? (seeds/004)"""

from ._experiment import MultiTokenExperiment
from ._spec import AdditionPart, Graph, MultiTokenSpec, NamesPart, PathStarPart

__all__ = ["AdditionPart", "Graph", "MultiTokenExperiment", "MultiTokenSpec", "NamesPart", "PathStarPart"]
