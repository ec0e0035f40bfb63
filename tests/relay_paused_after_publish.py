"""Test-only entry: the outbox relay as its own process, stopping for good once it has
published a batch and before it commits the batch's marks, so a test can SIGKILL it at
exactly that point (`python -m tests.relay_paused_after_publish`, configured from the
environment like `courtside worker outbox-relay`).

The relay is the product's (OutboxRelay.run_forever on the relay role's pool); only its
publisher is wrapped, so product code carries no hook for this.
"""

import asyncio

import asyncpg

from app.infra import aws
from app.infra.db import asyncpg_dsn
from app.infra.logging import configure_logging
from app.infra.settings import get_settings
from workers.outbox_relay import OutboxRelay, Publisher, queue_urls
from workers.runtime import Shutdown

PAUSED = "relay: published, pausing before commit"


class PausingPublisher(Publisher):
    """Publishes as the product does, then announces it on stdout and never returns."""

    async def publish(self, queue: str, events: list[tuple[str, str]]) -> set[str]:
        await super().publish(queue, events)
        print(PAUSED, flush=True)
        await asyncio.Event().wait()  # until the test kills the process
        raise AssertionError("unreachable")


async def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    pool = await asyncpg.create_pool(
        asyncpg_dsn(settings.relay_database_url), min_size=1, max_size=2
    )
    try:
        async with aws.client(settings, "sqs") as sqs:
            relay = OutboxRelay(settings, PausingPublisher(sqs, queue_urls(settings)), pool)
            await relay.run_forever(Shutdown())
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
