"""``mode-collapse`` (seeds/000): do tuned models flatten their distributions and lose calibration?"""

from ._experiment import ModeCollapse
from ._spec import ModeCollapseSpec

__all__ = ["ModeCollapse", "ModeCollapseSpec"]
