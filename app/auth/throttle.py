"""Failed-login throttling (OWASP Authentication Cheat Sheet).

Three counters of failures: per (account, IP) — tight, so one source can't guess; per IP —
catches one source spraying many accounts; per account from anywhere — higher, with a
short window (LOGIN_ACCOUNT_LOCK_SECONDS), so a distributed attacker can keep an account
locked for at most that long at a time and the owner, from their own IP, is otherwise
unaffected. A successful login clears the (account, IP) counter.
"""

import hashlib

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.errors import RateLimited
from app.settings import Settings


def _account_key(email: str) -> str:
    # Hash: keys should not carry addresses in clear.
    return hashlib.sha256(email.lower().encode()).hexdigest()[:32]


class LoginThrottle:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings

    def _counters(self, email: str, ip: str) -> list[tuple[str, int, int]]:
        s = self.settings
        account = _account_key(email)
        return [
            (
                f"lf:acct-ip:{account}:{ip}",
                s.login_max_failures_per_account_ip,
                s.login_failure_window_seconds,
            ),
            (f"lf:ip:{ip}", s.login_max_failures_per_ip, s.login_failure_window_seconds),
            (f"lf:acct:{account}", s.login_max_failures_per_account, s.login_account_lock_seconds),
        ]

    async def check(self, email: str, ip: str) -> None:
        counters = self._counters(email, ip)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, _, _ in counters:
                    pipe.get(key)
                    pipe.pttl(key)
                results = await pipe.execute()
        except (RedisError, OSError):
            return  # same fail-open choice as the rate limiter; argon2 still slows guessing
        for i, (_, limit, _) in enumerate(counters):
            count, ttl_ms = results[2 * i], results[2 * i + 1]
            if count is not None and int(count) >= limit:
                retry = max(1, (int(ttl_ms) + 999) // 1000) if ttl_ms and ttl_ms > 0 else 1
                raise RateLimited("Too many failed logins; try again later.", retry_after=retry)

    async def record_failure(self, email: str, ip: str) -> None:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                for key, _, window in self._counters(email, ip):
                    pipe.incr(key)
                    pipe.expire(key, window, nx=True)
                await pipe.execute()
        except (RedisError, OSError):
            pass

    async def record_success(self, email: str, ip: str) -> None:
        try:
            await self.redis.delete(self._counters(email, ip)[0][0])
        except (RedisError, OSError):
            pass
