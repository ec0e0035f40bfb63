"""Failed-login throttling that slows a guesser without locking the owner out.

Counted in Redis per failure, over LOGIN_FAILURE_WINDOW_SECONDS:

- per (account, address): one source guessing one account gets
  LOGIN_MAX_FAILURES_PER_ACCOUNT_IP guesses;
- per address: one source spraying many accounts gets LOGIN_MAX_FAILURES_PER_IP;
- per account: its failures, and how many distinct addresses they came from. With at least
  LOGIN_MAX_FAILURES_PER_ACCOUNT failures from at least LOGIN_ALERT_MIN_ADDRESSES addresses
  the account is on alert: an address that has already failed for it is refused before
  its password is checked, so a distributed guesser gets one guess per address and window.

Nothing is ever refused to an address that has not failed for the account: its password is
checked, and a right one signs in, whatever anyone else is doing. (A hard account-wide
lock would let anyone with a few addresses keep the owner out.) The owner's own address,
if it mistyped during an alert, recovers after the window or at once with a password
reset. A successful login clears its (account, address) counter. Unknown addresses are
counted exactly like known ones, so a 429 says nothing about whether an account exists.

We keep these few Redis commands rather than the `limits` library: it has no distinct-
address count, and would take a round trip per limit where a pipeline takes one.
"""

import hashlib
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.infra.errors import RateLimited
from app.infra.settings import Settings

log = structlog.get_logger(__name__)
REFUSED = "Too many failed logins; try again later."


def _account_key(email: str) -> str:
    # Hash: keys should not carry addresses in clear.
    return hashlib.sha256(email.lower().encode()).hexdigest()[:32]


@dataclass(frozen=True)
class _Keys:
    account_ip: str  # failures of this address for this account
    ip: str  # failures of this address, any account
    account: str  # failures for this account, any address
    addresses: str  # HyperLogLog of the addresses that failed for this account


def _keys(email: str, ip: str) -> _Keys:
    account = _account_key(email)
    return _Keys(
        f"lf:acct-ip:{account}:{ip}", f"lf:ip:{ip}", f"lf:acct:{account}", f"lf:addrs:{account}"
    )


def _retry_after(ttl_ms: int | None) -> int:
    return max(1, (int(ttl_ms) + 999) // 1000) if ttl_ms and int(ttl_ms) > 0 else 1


class LoginThrottle:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings

    async def check(self, email: str, ip: str) -> None:
        """Refuse (429) before the password is checked, or return to let it be checked."""
        keys = _keys(email, ip)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(keys.account_ip)
                pipe.pttl(keys.account_ip)
                pipe.get(keys.ip)
                pipe.pttl(keys.ip)
                pipe.get(keys.account)
                pipe.pfcount(keys.addresses)
                pair, pair_ttl, per_ip, ip_ttl, account, addresses = await pipe.execute()
        except (RedisError, OSError):
            return  # same fail-open choice as the rate limiter; argon2 still slows guessing
        s = self.settings
        pair = int(pair or 0)
        if int(per_ip or 0) >= s.login_max_failures_per_ip:
            raise RateLimited(REFUSED, retry_after=_retry_after(ip_ttl))
        if pair >= s.login_max_failures_per_account_ip:
            raise RateLimited(REFUSED, retry_after=_retry_after(pair_ttl))
        on_alert = (
            int(account or 0) >= s.login_max_failures_per_account
            and int(addresses or 0) >= s.login_alert_min_addresses
        )
        if on_alert and pair > 0:
            log.info("login_refused_account_on_alert", account=_account_key(email), ip=ip)
            raise RateLimited(REFUSED, retry_after=_retry_after(pair_ttl))

    async def record_failure(self, email: str, ip: str) -> None:
        keys, window = _keys(email, ip), self.settings.login_failure_window_seconds
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                for key in (keys.account_ip, keys.ip):
                    pipe.incr(key)
                    pipe.expire(key, window, nx=True)
                # The account's own counters live while failures keep coming: an alert lasts
                # as long as the attack, plus one window.
                pipe.incr(keys.account)
                pipe.expire(keys.account, window)
                pipe.pfadd(keys.addresses, ip)
                pipe.expire(keys.addresses, window)
                await pipe.execute()
        except (RedisError, OSError):
            pass

    async def record_success(self, email: str, ip: str) -> None:
        """The owner proved themselves from this address: its failures are forgiven."""
        try:
            await self.redis.delete(_keys(email, ip).account_ip)
        except (RedisError, OSError):
            pass
