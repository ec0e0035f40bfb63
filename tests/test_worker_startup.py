"""A worker started before its dependencies waits for them instead of crash-looping.

In a fresh cluster (`skaffold dev`, a first `helm install`) the workers start alongside
PostgreSQL and moto, and the queues appear only when the post-install aws-init hook has run.
These tests start the real worker process (`python -m courtside.cli worker notifications`)
with PostgreSQL or its queue not there yet, then bring the dependency up: through a TCP proxy
to the harness's PostgreSQL opened on the port the worker was given, or by creating the queue.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import httpx
import pytest
from sqlalchemy.engine import make_url

from courtside.local.devstack import free_port

WORKER = [sys.executable, "-m", "courtside.cli", "worker", "notifications"]


class Worker:
    """The worker process, its output gathered line by line (stdout and stderr merged)."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(
            [*WORKER, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in list(self.lines):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def logged(self, event: str, **fields: str) -> bool:
        return any(
            e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
            for e in self.events()
        )

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(30)
        self._reader.join(5)
        return code


def until(condition: Callable[[], bool], seconds: float, what: str, worker: Worker) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(
        f"not seen within {seconds}s: {what}\n--- worker output ---\n{worker.output()}"
    )


def health(port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    except httpx.HTTPError:
        return None
    return response.status_code, response.json()


@contextmanager
def tcp_proxy(listen_port: int, target_host: str, target_port: int) -> Iterator[None]:
    """Forward 127.0.0.1:listen_port to the target, on its own event loop and thread."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    servers: list[asyncio.Server] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(target_host, target_port)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def serve() -> None:
        servers.append(await asyncio.start_server(handle, "127.0.0.1", listen_port))
        started.set()

    thread = threading.Thread(
        target=lambda: (loop.run_until_complete(serve()), loop.run_forever()), daemon=True
    )
    thread.start()
    assert started.wait(10)
    try:
        yield
    finally:

        async def close() -> None:
            servers[0].close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture
def worker_env(services) -> dict[str, str]:
    return {
        **os.environ,
        **services.env,
        "LOG_LEVEL": "INFO",
        "METRICS_PORT": str(free_port()),
        "SQS_NOTIFICATIONS_QUEUE_URL": services.settings.sqs_notifications_queue_url,
        "SQS_WAIT_SECONDS": "1",
    }


def with_port(url: str, port: int) -> str:
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def test_a_worker_waits_for_postgresql_and_starts_once_it_answers(services, worker_env):
    database = make_url(services.settings.database_url)
    port = free_port()  # nothing listens here until the proxy opens
    worker_env["DATABASE_URL"] = with_port(services.settings.database_url, port)
    metrics_port = int(worker_env["METRICS_PORT"])
    worker = Worker(worker_env, "--wait", "120")
    try:
        until(
            lambda: worker.logged("waiting_for_dependency", dependency="postgresql"),
            60,
            "waiting_for_dependency postgresql",
            worker,
        )
        waiting = next(e for e in worker.events() if e.get("event") == "waiting_for_dependency")
        assert waiting["where"] == f"127.0.0.1:{port}/{database.database}"
        assert "courtside_app" not in json.dumps(waiting)  # no user or password in the logs
        # /healthz says it is starting and what it waits for: not ready, not a crash.
        assert health(metrics_port) == (
            503,
            {"status": "starting", "waiting_for": ["postgresql", "sqs notifications queue"]},
        )
        assert worker.process.poll() is None

        with tcp_proxy(port, database.host or "127.0.0.1", database.port or 5432):
            until(
                lambda: worker.logged("dependencies_ready", worker="notifications"),
                60,
                "dependencies_ready",
                worker,
            )
            until(
                lambda: health(metrics_port) == (200, {"status": "ok"}),
                60,
                "/healthz ok",
                worker,
            )
            assert worker.logged("dependency_ready", dependency="postgresql")
            assert worker.logged("dependency_ready", dependency="sqs notifications queue")
            assert worker.stop() == 0
    finally:
        if worker.process.poll() is None:
            worker.process.kill()


def test_a_worker_waits_for_its_queue_until_aws_init_creates_it(services, worker_env):
    name = f"courtside-test-late-{uuid.uuid4().hex[:8]}"
    endpoint = services.env["AWS_ENDPOINT_URL"].rstrip("/")
    queue_url = f"{endpoint}/123456789012/{name}"  # moto's default account
    worker_env["SQS_NOTIFICATIONS_QUEUE_URL"] = queue_url
    metrics_port = int(worker_env["METRICS_PORT"])
    worker = Worker(worker_env, "--wait", "120")
    try:
        until(
            lambda: worker.logged("waiting_for_dependency", dependency="sqs notifications queue"),
            60,
            "waiting_for_dependency sqs notifications queue",
            worker,
        )
        assert worker.logged("dependency_ready", dependency="postgresql")
        assert health(metrics_port) == (
            503,
            {"status": "starting", "waiting_for": ["sqs notifications queue"]},
        )
        assert worker.process.poll() is None

        sqs = boto3.client(
            "sqs",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        assert sqs.create_queue(QueueName=name)["QueueUrl"].endswith(f"/123456789012/{name}")
        until(
            lambda: worker.logged("dependencies_ready", worker="notifications"),
            60,
            "dependencies_ready",
            worker,
        )
        until(lambda: health(metrics_port) == (200, {"status": "ok"}), 60, "/healthz ok", worker)
        assert worker.stop() == 0
        sqs.delete_queue(QueueUrl=queue_url)
    finally:
        if worker.process.poll() is None:
            worker.process.kill()


def test_a_worker_gives_up_with_a_clear_message_after_the_deadline(services, worker_env):
    database = make_url(services.settings.database_url)
    port = free_port()  # and nothing ever listens
    worker_env["DATABASE_URL"] = with_port(services.settings.database_url, port)
    worker = Worker(worker_env, "--wait", "2")
    try:
        code = worker.process.wait(60)
        worker._reader.join(5)
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
    output = worker.output()
    assert code != 0, output
    assert worker.logged("waiting_for_dependency", dependency="postgresql"), output
    assert (
        f"courtside worker notifications: gave up after 2s waiting for postgresql "
        f"(127.0.0.1:{port}/{database.database})"
    ) in output
    assert "Traceback" not in output
    assert not worker.logged("dependencies_ready")


def test_wait_zero_starts_at_once_without_checking(services, worker_env):
    """The control: with --wait 0 the worker doesn't check (the old behaviour), so the
    tests above see the waiting, not something else."""
    port = free_port()
    worker_env["DATABASE_URL"] = with_port(services.settings.database_url, port)
    metrics_port = int(worker_env["METRICS_PORT"])
    worker = Worker(worker_env, "--wait", "0")
    try:
        until(lambda: health(metrics_port) == (200, {"status": "ok"}), 60, "/healthz ok", worker)
        assert not worker.logged("waiting_for_dependency")
        assert worker.stop() == 0
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
