"""Who may read and manage a tenant, its members and its invitations.

The role check comes before the tenant check, as it always has: a COACH asking about
another tenant's members is told "forbidden", an ADMIN "not found".
"""

import uuid

from app.auth.caller import Caller
from app.auth.permissions import require_role
from app.infra.errors import NotFound
from app.tenants.models import Role

# Who may see the member list: the people who run the organisation, not its athletes.
STAFF = (Role.ADMIN, Role.COACH, Role.SCHEDULER)


def require_admin(caller: Caller) -> None:
    """Inviting, and changing or removing members: ADMIN only."""
    require_role(caller, Role.ADMIN)


def require_staff(caller: Caller) -> None:
    """Listing members: ADMIN, COACH or SCHEDULER."""
    require_role(caller, *STAFF)


def require_own_tenant(caller: Caller, tenant_id: uuid.UUID) -> None:
    """Another tenant's id is "not found", never "forbidden": ids don't leak across tenants."""
    if tenant_id != caller.tenant_id:
        raise NotFound("Tenant not found.")
