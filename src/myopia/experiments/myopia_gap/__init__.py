"""``myopia-gap``: how much loss does a model lose when it cannot pre-cache? (Wu, Morris & Levine 2024)"""

from ._experiment import MyopiaGap
from ._spec import GapSetting, MyopiaGapSpec

__all__ = ["GapSetting", "MyopiaGap", "MyopiaGapSpec"]
