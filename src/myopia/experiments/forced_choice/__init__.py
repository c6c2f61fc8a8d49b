"""``forced-choice`` (seeds/001): see :mod:`._experiment` for the method and headline figures."""

from ._experiment import ForcedChoice, ForcedChoiceSpec

__all__ = ["ForcedChoice", "ForcedChoiceSpec"]
