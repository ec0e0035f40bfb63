"""Rate limiting in Redis: per IP, per user and per tenant.

Each scope is a GCRA bucket (the algorithm of redis-cell / Stripe's limiter): a sustained
rate of `requests` per `window_seconds`, with `burst` extra requests allowed at once. All
scopes of a request are checked together and charged only if every one allows it, so a
request refused by the tenant limit doesn't use up the user's allowance. We keep these
small scripts rather than a library because the libraries we tried need one round trip per
limit on every request.

Two ways to check:

- `check()` asks Redis every time: one round trip, exact across replicas. For the rare,
  security-relevant calls (login, registration, token refresh).
- `admit()` is the per-request path of authenticated calls. It decides in-process on a
  local copy of each bucket and charges Redis in the background every `sync_interval`, in
  one round trip for all buckets touched; Redis answers with each bucket's global state,
  which replaces the local copy. A bucket this process doesn't hold yet (or dropped after
  `idle_seconds`) goes through `check()`, so a client refused on one replica is refused on
  the next. With one replica, `admit()` is as exact as `check()`. With N, each decides on
  its own copy, refreshed when it syncs its charges, so together they may admit up to N
  times a bucket's remaining allowance before all of them see it spent; every admission
  is still charged to Redis, so the excess is paid back by refusals afterwards and the
  sustained rate holds. The Redis round trip this saves was a third of the feed's CPU per
  request (bench/feed.py).

When Redis is unreachable the limiter fails open by default (RATE_LIMIT_FAIL_OPEN): the
API stays available, `admit()` still limits each replica on its own copies, and the
ingress's coarse limits still apply; the error is logged and counted in
`courtside_ratelimit_backend_errors_total`. Set it to false to refuse with 503.
"""

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import structlog
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.infra.errors import RateLimited, ServiceUnavailable

log = structlog.get_logger(__name__)
BACKEND_ERRORS = Counter(
    "courtside_ratelimit_backend_errors_total",
    "Rate limiter calls that failed because Redis did not answer",
)
REJECTIONS = Counter("courtside_ratelimit_rejections_total", "Requests refused with 429", ["scope"])

# KEYS: one bucket key per scope. ARGV: now_ms, then per key: emission_ms, tolerance_ms.
# Returns {allowed (1/0), index of the first refusing key (1-based) or 0, retry_after_ms,
# then each key's TAT after this call as a string} (Redis turns Lua numbers into integers).
_CHECK = """
local now = tonumber(ARGV[1])
local tats, refused, retry = {}, 0, 0
for i, key in ipairs(KEYS) do
  local emission = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = math.max(tonumber(redis.call('GET', key) or now), now)
  tats[i] = tat
  if refused == 0 and tat - tolerance > now then
    refused, retry = i, tat - tolerance - now
  end
end
local out = {refused == 0 and 1 or 0, refused, retry}
for i, key in ipairs(KEYS) do
  if refused == 0 then
    tats[i] = tats[i] + tonumber(ARGV[2 * i])
    redis.call('SET', key, tats[i], 'PX', math.ceil(tats[i] - now) + 1000)
  end
  out[3 + i] = tostring(tats[i])
end
return out
"""

# KEYS: buckets. ARGV: now_ms, then per key the milliseconds of emission to charge (what
# this replica admitted since its last sync). Returns each key's TAT as a string.
_CHARGE = """
local now = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local tat = math.max(tonumber(redis.call('GET', key) or now), now) + tonumber(ARGV[i + 1])
  redis.call('SET', key, tat, 'PX', math.ceil(tat - now) + 1000)
  out[i] = tostring(tat)
end
return out
"""
_SYNC_BATCH = 500  # keys per sync script call, so one call never blocks Redis for long


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


@dataclass(slots=True)
class _LocalBucket:
    tat_ms: float  # GCRA theoretical arrival time as this process knows it
    pending_ms: float = 0.0  # emission admitted here and not yet charged to Redis
    last_used: float = 0.0  # monotonic seconds


def _now_ms() -> float:
    return time.time() * 1000


class RateLimiter:
    def __init__(
        self,
        redis: Redis,
        *,
        fail_open: bool = True,
        prefix: str = "rl",
        sync_interval: float = 0.05,
        idle_seconds: float = 60.0,
        max_local_buckets: int = 100_000,
    ) -> None:
        self.redis = redis
        self.fail_open = fail_open
        self.prefix = prefix
        self.sync_interval = sync_interval
        self.idle_seconds = idle_seconds
        self.max_local_buckets = max_local_buckets
        self._check_script = redis.register_script(_CHECK)
        self._charge_script = redis.register_script(_CHARGE)
        self._local: dict[str, _LocalBucket] = {}
        self._dirty: set[str] = set()
        self._sync_task: asyncio.Task[None] | None = None
        self._next_eviction = time.monotonic() + idle_seconds / 4

    def _key(self, bucket: Bucket) -> str:
        return f"{self.prefix}:{bucket.scope}:{bucket.key}"

    async def check(self, buckets: Sequence[Bucket]) -> None:
        """Charge one request to every bucket in Redis, or raise RateLimited charging none."""
        if buckets:
            await self._check_in_redis(buckets, [self._key(b) for b in buckets], adopt=False)

    async def admit(self, buckets: Sequence[Bucket]) -> None:
        """Like check(), decided on this process's copies of buckets it already holds."""
        keys = [self._key(b) for b in buckets]
        held = [self._local.get(k) for k in keys]
        if None in held:
            await self._check_in_redis(buckets, keys, adopt=True)
        else:
            self._decide_locally(buckets, keys, cast(list[_LocalBucket], held))

    def _decide_locally(
        self, buckets: Sequence[Bucket], keys: list[str], states: list[_LocalBucket]
    ) -> None:
        now = _now_ms()
        for bucket, state in zip(buckets, states, strict=True):
            allow_at = max(state.tat_ms, now) - bucket.limit.tolerance_ms
            if allow_at > now:
                self._refuse(bucket.scope, allow_at - now)
        used = time.monotonic()
        for bucket, state, key in zip(buckets, states, keys, strict=True):
            emission = bucket.limit.emission_ms
            state.tat_ms = max(state.tat_ms, now) + emission
            state.pending_ms += emission
            state.last_used = used
            self._dirty.add(key)

    async def _check_in_redis(
        self, buckets: Sequence[Bucket], keys: list[str], *, adopt: bool
    ) -> None:
        now = _now_ms()
        args: list[float] = [now]
        for b in buckets:
            args += [b.limit.emission_ms, b.limit.tolerance_ms]
        try:
            allowed, index, retry_ms, *tats = await self._check_script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self._backend_failed(exc)
            if not self.fail_open:
                raise ServiceUnavailable(
                    "Rate limiting is unavailable; try again shortly."
                ) from exc
            if adopt:  # keep limiting on this replica's own copies until Redis answers
                states = [self._local.setdefault(k, _LocalBucket(now)) for k in keys]
                self._decide_locally(buckets, keys, states)
            return
        if adopt:
            self._adopt(keys, tats)
        if not allowed:
            self._refuse(buckets[int(index) - 1].scope, float(retry_ms))

    def _adopt(self, keys: list[str], global_tats: Sequence[float | bytes | str]) -> None:
        """Take Redis's view of these buckets, plus what this process admitted since."""
        used = time.monotonic()
        for key, tat in zip(keys, global_tats, strict=True):
            state = self._local.get(key)
            if state is None:
                if len(self._local) >= self.max_local_buckets:
                    self._evict(everything_clean=True)
                state = self._local[key] = _LocalBucket(float(tat))
            else:
                state.tat_ms = float(tat) + state.pending_ms
            state.last_used = used

    @staticmethod
    def _refuse(scope: str, retry_ms: float) -> None:
        REJECTIONS.labels(scope).inc()
        raise RateLimited(
            f"Too many requests ({scope} limit).", retry_after=math.ceil(retry_ms / 1000)
        )

    @staticmethod
    def _backend_failed(exc: BaseException) -> None:
        BACKEND_ERRORS.inc()
        log.warning("ratelimit_backend_unavailable", error=str(exc))

    async def sync(self) -> None:
        """Charge Redis with what this process admitted since the last sync; adopt the
        global state it answers with; drop buckets idle for `idle_seconds`."""
        keys, charges = list(self._dirty), []
        self._dirty = set()
        for key in keys:
            state = self._local.get(key)
            charges.append(state.pending_ms if state else 0.0)
            if state:
                state.pending_ms = 0.0
        for start in range(0, len(keys), _SYNC_BATCH):
            batch = keys[start : start + _SYNC_BATCH]
            try:
                tats = await self._charge_script(
                    keys=batch, args=[_now_ms(), *charges[start : start + _SYNC_BATCH]]
                )
            except (RedisError, OSError) as exc:
                # The charges are dropped, not retried: replaying minutes of them at once
                # would lock clients out after an outage. Local limiting held meanwhile.
                self._backend_failed(exc)
                break
            self._adopt(batch, tats)
        if time.monotonic() >= self._next_eviction:
            self._evict()

    def _evict(self, *, everything_clean: bool = False) -> None:
        # Dropping a clean bucket loses nothing: Redis holds its state for the next check.
        now = time.monotonic()
        self._next_eviction = now + self.idle_seconds / 4
        idle_since = now - self.idle_seconds
        for key in [
            k
            for k, s in self._local.items()
            if k not in self._dirty and (everything_clean or s.last_used < idle_since)
        ]:
            del self._local[key]

    async def start(self) -> None:
        """Sync in the background until close()."""
        if self._sync_task is None:
            self._sync_task = asyncio.create_task(self._sync_forever(), name="ratelimit-sync")

    async def _sync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sync_interval)
            try:
                await self.sync()
            except Exception:  # never let the loop die; admit() would stop sharing state
                log.exception("ratelimit_sync_failed")

    async def close(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
            self._sync_task = None
        await self.sync()  # hand what this process admitted to the other replicas
