"""Rate limiting in Redis: per IP, per user and per tenant, checked in one round trip.

Each scope is a GCRA bucket (the algorithm of redis-cell / Stripe's limiter): a sustained
rate of `requests` per `window_seconds`, with `burst` extra requests allowed at once. One
Lua script checks all scopes of a request atomically and charges them only if every one
allows it, so a request refused by the tenant limit doesn't use up the user's allowance.
We keep this small script rather than a library because the libraries we tried need one
round trip per limit, and this runs on every request of the hot feed path.

When Redis is unreachable the limiter fails open by default (RATE_LIMIT_FAIL_OPEN): the
API stays available and the ingress's coarse limits still apply; the error is logged and
counted in `courtside_ratelimit_backend_errors_total`. Set it to false to refuse with 503.
"""

import math
import time
from dataclasses import dataclass

import structlog
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.errors import RateLimited, ServiceUnavailable

log = structlog.get_logger(__name__)
BACKEND_ERRORS = Counter(
    "courtside_ratelimit_backend_errors_total",
    "Rate limiter calls that failed because Redis did not answer",
)
REJECTIONS = Counter("courtside_ratelimit_rejections_total", "Requests refused with 429", ["scope"])

# KEYS: one bucket key per scope. ARGV: now_ms, then per key: emission_ms, tolerance_ms.
# Returns {allowed (1/0), index of the first refusing key (1-based) or 0, retry_after_ms}.
_GCRA = """
local now = tonumber(ARGV[1])
local tats = {}
for i, key in ipairs(KEYS) do
  local emission = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + emission
  local allow_at = new_tat - tolerance - emission
  if allow_at > now then
    return {0, i, allow_at - now}
  end
  tats[i] = new_tat
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, tats[i], 'PX', math.ceil(tats[i] - now) + 1000)
end
return {1, 0, 0}
"""


@dataclass(frozen=True)
class Limit:
    requests: int
    window_seconds: int
    burst: int = 0

    @property
    def emission_ms(self) -> float:
        return self.window_seconds * 1000 / self.requests

    @property
    def tolerance_ms(self) -> float:
        # `burst` extra requests may arrive at once on top of the steady rate.
        return self.emission_ms * self.burst


@dataclass(frozen=True)
class Bucket:
    scope: str  # "ip", "user", "tenant", "login-account", …
    key: str
    limit: Limit


class RateLimiter:
    def __init__(self, redis: Redis, *, fail_open: bool = True, prefix: str = "rl") -> None:
        self.redis = redis
        self.fail_open = fail_open
        self.prefix = prefix
        self._script = redis.register_script(_GCRA)

    async def check(self, buckets: list[Bucket]) -> None:
        """Charge one request to every bucket, or raise RateLimited without charging any."""
        if not buckets:
            return
        keys = [f"{self.prefix}:{b.scope}:{b.key}" for b in buckets]
        args: list[float] = [time.time() * 1000]
        for b in buckets:
            args += [b.limit.emission_ms, b.limit.tolerance_ms]
        try:
            allowed, index, retry_ms = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            BACKEND_ERRORS.inc()
            log.warning("ratelimit_backend_unavailable", error=str(exc))
            if self.fail_open:
                return
            raise ServiceUnavailable("Rate limiting is unavailable; try again shortly.") from exc
        if not allowed:
            scope = buckets[int(index) - 1].scope
            REJECTIONS.labels(scope).inc()
            raise RateLimited(
                f"Too many requests ({scope} limit).", retry_after=math.ceil(float(retry_ms) / 1000)
            )
