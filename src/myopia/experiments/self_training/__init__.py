"""``self-training`` (seeds/001, 002, 004): see :mod:`._experiment` for the method and headline figures."""

from ._experiment import SelfTrainingExperiment
from ._spec import SelfTrainingSpec

__all__ = ["SelfTrainingExperiment", "SelfTrainingSpec"]
