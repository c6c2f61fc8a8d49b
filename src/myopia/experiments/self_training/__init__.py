"""``self-training``: a lab model trained on its own samples (top-k, random-k, reward-k, RLOO), measured
for collapse and on the seed-001 game (seeds/001, 002, 004)."""

from ._experiment import SelfTrainingExperiment
from ._spec import SelfTrainingSpec

__all__ = ["SelfTrainingExperiment", "SelfTrainingSpec"]
