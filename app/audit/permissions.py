"""Who may read the audit trail: the organisation's ADMINs."""

from app.auth.caller import Caller
from app.auth.permissions import require_role
from app.tenants.models import Role


def require_admin(caller: Caller) -> None:
    """Reading the audit trail: ADMIN only."""
    require_role(caller, Role.ADMIN)
