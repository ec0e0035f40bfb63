import uuid
from dataclasses import dataclass

from app.tenants.models import Role


@dataclass(frozen=True)
class Caller:
    """Who is acting, as services see it: the authenticated user in their tenant."""

    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: Role

    def has_role(self, *roles: Role) -> bool:
        return self.role in roles
