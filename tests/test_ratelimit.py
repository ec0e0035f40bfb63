"""The rate limiter against a real Redis: exact checks, in-process admission, and the
background sharing of what each replica admitted (app/infra/ratelimit.py)."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from app.infra.errors import RateLimited, ServiceUnavailable
from app.infra.ratelimit import Bucket, Limit, RateLimiter
from courtside.local.devstack import free_port

# 60/minute with a burst of 2: three at once, then one per second.
PER_SECOND = Limit(60, 60, burst=2)


@pytest.fixture
async def redis(settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def replica(redis) -> Callable[..., RateLimiter]:
    """Limiters sharing one key prefix, as the API's replicas share one Redis."""
    prefix = f"rl-test-{uuid.uuid4().hex}"

    def make(**options) -> RateLimiter:
        return RateLimiter(redis, prefix=prefix, **options)

    return make


def user(key: str = "u1", limit: Limit = PER_SECOND) -> Bucket:
    return Bucket("user", key, limit)


async def admitted(limiter: RateLimiter, buckets: list[Bucket], attempts: int) -> int:
    count = 0
    for _ in range(attempts):
        try:
            await limiter.admit(buckets)
        except RateLimited:
            continue
        count += 1
    return count


async def test_admit_allows_the_burst_then_refuses_with_retry_after(replica):
    limiter = replica()
    assert await admitted(limiter, [user()], 10) == 3
    with pytest.raises(RateLimited) as refused:
        await limiter.admit([user()])
    assert refused.value.headers["Retry-After"] == "1"
    assert "user limit" in refused.value.detail


async def test_admit_and_check_agree_for_a_single_replica(replica):
    # The same sequence through Redis each time and through the local copy.
    exact, local = replica(), replica()
    exact_results, local_results = [], []
    for n in range(8):
        for limiter, results, key in ((exact, exact_results, "a"), (local, local_results, "b")):
            call = limiter.check if limiter is exact else limiter.admit
            try:
                await call([user(key)])
                results.append(True)
            except RateLimited:
                results.append(False)
        if n == 4:
            await asyncio.sleep(1.05)  # one more request's worth of allowance
    assert exact_results == local_results == [True] * 3 + [False] * 2 + [True] + [False] * 2


async def test_a_refusal_by_one_scope_charges_none(replica):
    limiter = replica()
    tenant = Bucket("tenant", "t1", Limit(60, 60, burst=0))
    assert await admitted(limiter, [user("u1"), tenant], 5) == 1
    # u1 was charged only for the one admitted request: two more fit its burst.
    assert await admitted(limiter, [user("u1")], 5) == 2


async def test_what_one_replica_admitted_reaches_another_on_sync(replica):
    ten_at_once = Limit(60, 60, burst=9)
    first, second = replica(), replica()
    await first.admit([user(limit=ten_at_once)])
    await second.admit([user(limit=ten_at_once)])  # both now hold the bucket locally
    assert await admitted(first, [user(limit=ten_at_once)], 5) == 5
    await second.admit([user(limit=ten_at_once)])
    await first.sync()
    await second.sync()
    # 8 admitted in all: second now knows only 2 are left, not the 7 of its own count.
    assert await admitted(second, [user(limit=ten_at_once)], 10) == 2


async def test_replicas_over_admit_between_syncs_and_pay_it_back(replica):
    first, second, observer = replica(), replica(), replica()
    await first.admit([user()])
    await second.admit([user()])
    # Each decides on its own copy until it syncs: 3 more admitted where 1 was left.
    assert await admitted(first, [user()], 10) + await admitted(second, [user()], 10) == 3
    await first.sync()
    await second.sync()
    # All 5 were charged to Redis, 2 past the burst: refused until the debt is paid (3 s
    # rather than 1), so the sustained rate stays the configured one.
    with pytest.raises(RateLimited) as refused:
        await observer.check([user()])
    assert refused.value.headers["Retry-After"] == "3"
    for limiter in (first, second):
        with pytest.raises(RateLimited):
            await limiter.admit([user()])


async def test_a_bucket_this_replica_does_not_hold_is_checked_in_redis(replica):
    first, fresh = replica(), replica()
    assert await admitted(first, [user()], 3) == 3
    await first.sync()
    with pytest.raises(RateLimited):
        await fresh.admit([user()])


async def test_the_background_sync_shares_charges_without_being_asked(replica):
    first, observer = replica(sync_interval=0.02), replica()
    await first.start()
    try:
        assert await admitted(first, [user()], 3) == 3
        await asyncio.sleep(0.2)
        with pytest.raises(RateLimited):
            await observer.check([user()])
    finally:
        await first.close()


async def test_close_hands_pending_charges_to_redis(replica):
    first, observer = replica(sync_interval=3600), replica()
    await first.start()
    assert await admitted(first, [user()], 3) == 3
    await first.close()
    with pytest.raises(RateLimited):
        await observer.check([user()])


async def test_idle_buckets_are_dropped_and_then_read_again_from_redis(replica):
    stale, other = replica(idle_seconds=0), replica()
    await stale.admit([user()])
    await stale.sync()  # idle_seconds=0: the clean bucket is dropped here
    assert await admitted(other, [user()], 5) == 2
    await other.sync()
    # Had `stale` kept its copy it would admit two more; it asks Redis and refuses.
    with pytest.raises(RateLimited):
        await stale.admit([user()])


@pytest.mark.parametrize("fail_open", [True, False])
async def test_redis_down(fail_open):
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    limiter = RateLimiter(dead, fail_open=fail_open)
    try:
        if fail_open:
            # Admitted, and still limited on this replica's own copy of the bucket.
            assert await admitted(limiter, [user()], 10) == 3
            await limiter.sync()  # fails, logged and counted; never raises
        else:
            with pytest.raises(ServiceUnavailable):
                await limiter.admit([user()])
            with pytest.raises(ServiceUnavailable):
                await limiter.check([user()])
    finally:
        await dead.aclose()
