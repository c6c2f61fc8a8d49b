"""myopia: a laboratory for how far ahead autoregressive language models look."""

from ._errors import UserError

__all__ = ["UserError"]
__version__ = "0.1.0"
