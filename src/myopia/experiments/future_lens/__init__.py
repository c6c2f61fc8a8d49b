"""``future-lens``: does the hidden state at t already encode the tokens at t+1, t+2, t+3?"""

from ._experiment import FutureLens
from ._spec import FutureLensSpec

__all__ = ["FutureLens", "FutureLensSpec"]
