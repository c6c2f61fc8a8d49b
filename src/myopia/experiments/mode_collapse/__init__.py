"""``mode-collapse`` (seeds/000): see :mod:`._experiment` for the method and headline figures."""

from ._experiment import ModeCollapse, ModeCollapseSpec

__all__ = ["ModeCollapse", "ModeCollapseSpec"]
