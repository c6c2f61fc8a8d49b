"""``head-roles`` (seeds/003): is a previous-token head useful at its own position, or for later ones?"""

from ._experiment import HeadRoles
from ._spec import HeadRolesSpec

__all__ = ["HeadRoles", "HeadRolesSpec"]
