"""``multi-token`` (seeds/004): see :mod:`._experiment` for the method and headline figures."""

from ._experiment import MultiTokenExperiment
from ._spec import MultiTokenSpec

__all__ = ["MultiTokenExperiment", "MultiTokenSpec"]
