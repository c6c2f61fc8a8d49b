"""``gradient-horizon`` (seeds/001): at token i in a non-final layer, which token's loss are you optimizing for?"""

from ._experiment import GradientHorizon
from ._spec import GradientHorizonSpec

__all__ = ["GradientHorizon", "GradientHorizonSpec"]
