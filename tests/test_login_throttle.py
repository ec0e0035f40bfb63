"""A distributed guesser is slowed, and the owner is never locked out (app/auth/throttle.py)."""

import random
from contextlib import asynccontextmanager

import httpx

from tests.factories import RESET_SUBJECT, mails_to, next_mail, register_tenant, token_in


@asynccontextmanager
async def _from(app, ip: str):
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


def _addresses(n: int) -> list[str]:
    # Fresh addresses per test: the per-address counters are global to the Redis.
    base = f"198.{random.randint(18, 19)}.{random.randint(0, 255)}"
    return [f"{base}.{i}" for i in range(1, n + 1)]


async def _spray(app, email: str, addresses: list[str], per_address: int) -> None:
    for ip in addresses:
        async with _from(app, ip) as attacker:
            for _ in range(per_address):
                response = await attacker.post(
                    "/auth/login", json={"email": email, "password": "guess-guess"}
                )
                assert response.status_code == 401


async def test_distributed_guessing_does_not_lock_out_the_owner(app, client, settings):
    owner = await register_tenant(client)
    attackers = _addresses(settings.login_alert_min_addresses)
    per_address = -(-settings.login_max_failures_per_account // len(attackers))
    assert per_address < settings.login_max_failures_per_account_ip  # under the pair limit
    await _spray(app, owner.email, attackers, per_address)

    async with _from(app, _addresses(1)[0]) as owner_device:
        response = await owner_device.post(
            "/auth/login", json={"email": owner.email, "password": owner.password}
        )
    assert response.status_code == 200


async def test_during_the_alert_addresses_that_failed_are_refused_before_any_check(app, settings):
    async with _from(app, _addresses(1)[0]) as c:
        owner = await register_tenant(c)
    attackers = _addresses(settings.login_alert_min_addresses)
    per_address = -(-settings.login_max_failures_per_account // len(attackers))
    await _spray(app, owner.email, attackers, per_address)
    for ip in attackers:
        async with _from(app, ip) as attacker:
            # Refused before the password is looked at: even the right one gets 429.
            response = await attacker.post(
                "/auth/login", json={"email": owner.email, "password": owner.password}
            )
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) > 0


async def test_during_the_alert_a_clean_address_gets_one_guess(app, settings):
    async with _from(app, _addresses(1)[0]) as c:
        owner = await register_tenant(c)
    attackers = _addresses(settings.login_alert_min_addresses)
    per_address = -(-settings.login_max_failures_per_account // len(attackers))
    await _spray(app, owner.email, attackers, per_address)
    async with _from(app, _addresses(1)[0]) as fresh:
        first = await fresh.post("/auth/login", json={"email": owner.email, "password": "nope1"})
        second = await fresh.post(
            "/auth/login", json={"email": owner.email, "password": owner.password}
        )
    assert first.status_code == 401
    assert second.status_code == 429


async def test_without_enough_addresses_there_is_no_account_wide_measure(app, settings):
    async with _from(app, _addresses(1)[0]) as c:
        owner = await register_tenant(c)
    attackers = _addresses(settings.login_alert_min_addresses - 1)
    # As many failures as each address may make: the account passes its failure count.
    await _spray(app, owner.email, attackers, settings.login_max_failures_per_account_ip - 1)
    async with _from(app, _addresses(1)[0]) as owner_device:
        typo = await owner_device.post(
            "/auth/login", json={"email": owner.email, "password": "typo typo"}
        )
        right = await owner_device.post(
            "/auth/login", json={"email": owner.email, "password": owner.password}
        )
    assert typo.status_code == 401
    assert right.status_code == 200


async def test_a_password_reset_frees_the_owners_address(app, settings):
    async with _from(app, _addresses(1)[0]) as c:
        owner = await register_tenant(c)
    attackers = _addresses(settings.login_alert_min_addresses)
    per_address = -(-settings.login_max_failures_per_account // len(attackers))
    await _spray(app, owner.email, attackers, per_address)
    async with _from(app, _addresses(1)[0]) as owner_device:
        await owner_device.post("/auth/login", json={"email": owner.email, "password": "typo!"})
        refused = await owner_device.post(
            "/auth/login", json={"email": owner.email, "password": owner.password}
        )
        assert refused.status_code == 429
        seen = len(mails_to(owner.email))
        await owner_device.post("/auth/password/forgot", json={"email": owner.email})
        token = token_in(await next_mail(owner.email, RESET_SUBJECT, seen=seen))
        reset = await owner_device.post(
            "/auth/password/reset", json={"token": token, "password": "a fresh password"}
        )
        assert reset.status_code == 204
        again = await owner_device.post(
            "/auth/login", json={"email": owner.email, "password": "a fresh password"}
        )
    assert again.status_code == 200


async def test_unknown_accounts_are_throttled_like_known_ones(client, settings):
    owner = await register_tenant(client)
    unknown = "nobody-" + owner.email
    answers = {}
    for email in (owner.email, unknown):
        for _ in range(settings.login_max_failures_per_account_ip):
            await client.post("/auth/login", json={"email": email, "password": "guess-guess"})
        refused = await client.post("/auth/login", json={"email": email, "password": "x-guess"})
        answers[email] = (refused.status_code, refused.json()["detail"])
    assert answers[owner.email] == answers[unknown] == (429, answers[owner.email][1])
