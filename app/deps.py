"""Dependencies every route shares: resources, settings, the database, the request's
metadata, IP rate limits and the authenticated caller.

All are `async def`: FastAPI runs plain `def` dependencies in a thread pool, a hand-off
that cost most of the feed's time when measured (bench/feed.py).
"""

from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError

from app.auth.caller import Caller
from app.infra.db import Database
from app.infra.errors import TenantSuspended, Unauthorized
from app.infra.ratelimit import Bucket, Limit
from app.infra.request_meta import RequestMeta
from app.infra.settings import Settings
from app.media.objects import MediaObjects
from app.resources import Resources

_bearer = HTTPBearer(auto_error=False, description="Access token from /auth/login")


async def get_resources(request: Request) -> Resources:
    return request.app.state.resources  # type: ignore[no-any-return]


ResourcesDep = Annotated[Resources, Depends(get_resources)]


def parse_query[Q: BaseModel](model: type[Q], request: Request) -> Q:
    """The query string as `model`, for routes that skip FastAPI's parameter solving;
    errors are the same 422 problem as FastAPI's own."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("query", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from exc


def query_openapi(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI query parameters of `model`, for routes that use parse_query()."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": {k: v for k, v in field.items() if k != "description"},
            **({"description": field["description"]} if "description" in field else {}),
        }
        for name, field in schema["properties"].items()
    ]


async def get_settings_dep(resources: ResourcesDep) -> Settings:
    return resources.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_database(resources: ResourcesDep) -> Database:
    return resources.db


# What routers hand to services: services open their own tenant-scoped transactions
# (docs/architecture.md, "The service contract").
DatabaseDep = Annotated[Database, Depends(get_database)]


async def get_media_objects(resources: ResourcesDep) -> MediaObjects:
    return resources.media_objects


MediaObjectsDep = Annotated[MediaObjects, Depends(get_media_objects)]


async def get_request_meta(request: Request) -> RequestMeta:
    # Behind the ingress, uvicorn's proxy-headers support (FORWARDED_ALLOW_IPS) has already
    # replaced client.host with the forwarded address from trusted proxies only.
    ip = request.client.host if request.client else "unknown"
    return RequestMeta(
        ip=ip,
        request_id=request.state.request_id if hasattr(request.state, "request_id") else None,
        user_agent=request.headers.get("user-agent"),
    )


MetaDep = Annotated[RequestMeta, Depends(get_request_meta)]


async def ip_rate_limit(resources: ResourcesDep, meta: MetaDep) -> None:
    """For routes without a caller yet (login, register, refresh)."""
    s = resources.settings
    if not s.rate_limit_enabled:
        return
    await resources.limiter.check(
        [
            Bucket(
                "ip",
                meta.ip,
                Limit(s.rate_limit_max_per_ip, s.rate_limit_window_seconds, s.rate_limit_burst),
            )
        ]
    )


async def current_caller(
    resources: ResourcesDep,
    meta: MetaDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The authenticated caller, with their role as the database has it (not as the token
    says); also enforces suspension, ended sessions and the IP/user/tenant limits."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("A bearer access token is required.")
    claims = resources.access_tokens.decode(credentials.credentials)
    policy = await resources.tenant_policies.get(claims.tenant_id)
    if not policy.exists:
        raise Unauthorized("The access token is invalid or expired.")
    if policy.suspended:
        raise TenantSuspended("This organisation's account is suspended.")
    # Cached for MEMBERSHIP_CACHE_SECONDS: a removed member, a signed-out session or a
    # changed role takes effect within that, not when the token expires.
    role = await resources.member_sessions.role(claims.tenant_id, claims.user_id, claims.session_id)
    if role is None:
        raise Unauthorized("This session has ended or is no longer a member; sign in again.")
    if resources.settings.rate_limit_enabled:
        # Decided in-process, shared through Redis in the background (app/infra/ratelimit.py).
        await resources.limiter.admit(
            [
                Bucket("ip", meta.ip, policy.per_ip),
                Bucket("user", str(claims.user_id), policy.per_user),
                Bucket("tenant", str(claims.tenant_id), policy.per_tenant),
            ]
        )
    structlog.contextvars.bind_contextvars(
        tenant_id=str(claims.tenant_id), user_id=str(claims.user_id)
    )
    return Caller(claims.user_id, claims.tenant_id, role)


CallerDep = Annotated[Caller, Depends(current_caller)]
