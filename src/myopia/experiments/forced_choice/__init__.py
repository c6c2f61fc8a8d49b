"""``forced-choice`` (seeds/001): does a model avoid an answer whose continuation is unpredictable?"""

from ._experiment import ForcedChoice
from ._spec import ForcedChoiceSpec

__all__ = ["ForcedChoice", "ForcedChoiceSpec"]
