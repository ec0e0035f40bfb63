"""The long-lived clients a process holds: database, Redis, limiter, tenant policies, S3."""

from dataclasses import dataclass

import asyncpg
from redis.asyncio import Redis

from app.auth.security import AccessTokenDecoder
from app.auth.throttle import LoginThrottle
from app.infra.db import Database
from app.infra.ratelimit import RateLimiter
from app.infra.settings import Settings
from app.media.objects import MediaObjects
from app.tenants.access import MemberSessionCache
from app.tenants.policy import TenantPolicyCache


@dataclass
class Resources:
    settings: Settings
    db: Database
    redis: Redis
    limiter: RateLimiter
    login_throttle: LoginThrottle
    tenant_policies: TenantPolicyCache
    access_tokens: AccessTokenDecoder
    member_sessions: MemberSessionCache
    media_objects: MediaObjects
    read_pool: asyncpg.Pool | None = None

    @classmethod
    def create(cls, settings: Settings) -> "Resources":
        db = Database.from_settings(settings, application_name="courtside-api")
        redis = Redis.from_url(
            settings.redis_url,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            health_check_interval=30,
        )
        return cls(
            settings=settings,
            db=db,
            redis=redis,
            limiter=RateLimiter(
                redis,
                fail_open=settings.rate_limit_fail_open,
                sync_interval=settings.rate_limit_sync_interval_ms / 1000,
            ),
            login_throttle=LoginThrottle(redis, settings),
            tenant_policies=TenantPolicyCache(db, settings),
            access_tokens=AccessTokenDecoder(settings),
            member_sessions=MemberSessionCache(settings.membership_cache_seconds),
            media_objects=MediaObjects(settings),
        )

    async def open(self) -> None:
        self.read_pool = await self.db.create_raw_pool(
            self.settings.database_url, size=self.settings.db_read_pool_size
        )
        self.tenant_policies.read_pool = self.read_pool
        self.member_sessions.read_pool = self.read_pool
        await self.limiter.start()
        await self.media_objects.open()

    async def close(self) -> None:
        await self.media_objects.close()
        await self.limiter.close()
        if self.read_pool is not None:
            await self.read_pool.close()
        await self.redis.aclose()
        await self.db.dispose()
