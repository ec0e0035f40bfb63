"""The role check every domain's permissions are built from.

A domain says who may do what in its own `permissions.py` (`app/tenants/permissions.py`,
`app/audit/permissions.py`, …); each of those calls `require_role`, so a refusal reads the
same in every domain.
"""

from app.auth.caller import Caller
from app.infra.errors import Forbidden
from app.tenants.models import Role


def require_role(caller: Caller, *roles: Role) -> None:
    """Raise Forbidden unless the caller holds one of `roles` in their tenant."""
    if not caller.has_role(*roles):
        raise Forbidden(f"This action requires one of the roles: {', '.join(roles)}.")
