"""``sequence-likelihood`` (seeds/004): why is " a a a a ..." more probable than a real story?"""

from ._experiment import SequenceLikelihood
from ._spec import SequenceLikelihoodSpec

__all__ = ["SequenceLikelihood", "SequenceLikelihoodSpec"]
