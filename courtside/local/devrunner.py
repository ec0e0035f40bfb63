"""`courtside dev`: the whole product on a laptop, no containers.

Starts (unless the environment already points at one) PostgreSQL, Redis, moto's S3+SQS
server and an SMTP server; bootstraps roles, migrates, seeds the demo tenant; then runs the
API and every worker as child processes. Only the API's port is fixed (--port or $PORT, so
its URL is known); the servers' ports and every metrics/health port are free loopback ports
picked at start, so two stacks run side by side. The banner appears once every process
answers its health check; if one does not, it says which and stops everything. State lives
in .courtside/ (or $COURTSIDE_STATE_DIR) so a second run keeps the data; Ctrl-C stops all.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from app.infra.aws import ensure_resources
from app.infra.dbadmin import ROOT, bootstrap, migrate
from app.infra.settings import Settings, get_settings
from courtside.local import devstack
from courtside.local.seed import seed_demo
from workers import WORKERS

STATE_DIR = Path(os.environ.get("COURTSIDE_STATE_DIR", ".courtside")).resolve()
# Long enough for a cold start on a busy laptop; a process that crashes is noticed at once.
READY_TIMEOUT_SECONDS = 90.0


@dataclass
class DevProcess:
    """A child of the stack and the URLs that answer 200 once it is healthy."""

    name: str
    process: subprocess.Popen[bytes]
    health_urls: list[str]


class NotHealthy(Exception):
    """A child exited or missed the deadline before it answered its health check."""


def _runtime_urls(host_port: str) -> dict[str, str]:
    database = "courtside"
    return {
        "DATABASE_URL": f"postgresql+asyncpg://courtside_app:courtside_app@{host_port}/{database}",
        "MIGRATION_DATABASE_URL": f"postgresql+asyncpg://courtside_owner:courtside_owner@{host_port}/{database}",
        "RELAY_DATABASE_URL": f"postgresql+asyncpg://courtside_relay:courtside_relay@{host_port}/{database}",
    }


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _step(message: str) -> None:
    print(f"courtside dev: {message}", flush=True)


def _start_backing_services(started: list[object]) -> dict[str, str]:
    """Start the servers the environment does not point at; returns the variables naming them."""
    env: dict[str, str] = {}
    if "DATABASE_URL" not in os.environ:
        pgdata = STATE_DIR / "pgdata"
        first_run = not (pgdata / "PG_VERSION").exists()
        _step(f"starting PostgreSQL{f' (first run: creating {pgdata})' if first_run else ''}…")
        pg = devstack.EmbeddedPostgres(pgdata).start()
        started.append(pg)
        env.update(_runtime_urls(f"127.0.0.1:{pg.port}"))
        env["DATABASE_ADMIN_URL"] = pg.admin_url
    if "REDIS_URL" not in os.environ:
        _step("starting Redis…")
        redis = devstack.RedisServer(STATE_DIR / "redis", persist=True).start()
        started.append(redis)
        env["REDIS_URL"] = redis.url
    if "AWS_ENDPOINT_URL" not in os.environ and "AWS_ENDPOINT" not in os.environ:
        _step("starting S3 and SQS (moto)…")
        moto = devstack.MotoServer(STATE_DIR).start()
        started.append(moto)
        env.update(
            {
                "AWS_ENDPOINT_URL": moto.url,
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
            }
        )
    if "SMTP_HOST" not in os.environ:
        _step("starting the mail catcher (SMTP)…")
        smtp = devstack.SmtpServer(mail_dir=STATE_DIR / "mail").start()
        started.append(smtp)
        env.update({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port)})
    return env


def _prepare(settings: Settings) -> Settings:
    """Roles, migrations, bucket and queues, the demo tenant; returns the final settings."""
    admin_url = os.environ.get("DATABASE_ADMIN_URL")
    if admin_url:
        _step("creating roles and database…")
        asyncio.run(bootstrap(admin_url, settings))
    _step("applying migrations…")
    migrate(settings)
    _step("creating the bucket and queues…")
    queues = asyncio.run(ensure_resources(settings))
    os.environ.setdefault("SQS_NOTIFICATIONS_QUEUE_URL", queues["notifications"])
    os.environ.setdefault("SQS_MEDIA_QUEUE_URL", queues["media"])
    os.environ.setdefault("OPERATOR_STATE_DIR", str(STATE_DIR / "tenants"))
    get_settings.cache_clear()
    settings = get_settings()
    # The demo tenant arrives the way platform engineers onboard one: a Tenant manifest.
    from courtside_operator.cli import LocalState, apply

    _step("applying the demo Tenant manifest…")
    manifest = ROOT / "examples" / "tenants" / "demo-academy.yaml"
    state = LocalState(Path(settings.operator_state_dir))
    if asyncio.run(apply(settings, [manifest], state)) != 0:
        sys.exit("courtside dev: applying the demo Tenant manifest failed")
    _step("seeding the demo users…")
    asyncio.run(seed_demo(settings))
    return settings


def _start_processes(processes: list[DevProcess], api_port: int, api_metrics_port: int) -> None:
    """Start the API and every worker into `processes`, each with its own free health/metrics
    port (appended one by one, so an interrupt midway still stops those already started)."""
    exe = [sys.executable, "-m", "courtside.cli"]
    api = subprocess.Popen(  # noqa: S603 - our own command
        [*exe, "api", "--port", str(api_port)],
        env={**os.environ, "METRICS_PORT": str(api_metrics_port)},
    )
    processes.append(
        DevProcess(
            "API",
            api,
            [
                f"http://127.0.0.1:{api_port}/readyz",
                f"http://127.0.0.1:{api_metrics_port}/metrics",
            ],
        )
    )
    for name in sorted(WORKERS):
        health_port = devstack.free_port()
        worker = subprocess.Popen(  # noqa: S603 - our own command
            [*exe, "worker", name], env={**os.environ, "METRICS_PORT": str(health_port)}
        )
        processes.append(
            DevProcess(f"{name} worker", worker, [f"http://127.0.0.1:{health_port}/healthz"])
        )


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our loopback URL
            return bool(response.status == 200)
    except OSError:  # refused, reset, timed out, or an HTTP error status
        return False


def wait_until_healthy(processes: list[DevProcess], timeout: float) -> None:
    """Poll every process's health URLs until all answer 200; raise NotHealthy naming the
    first process that exits, or every process still unhealthy at the deadline."""
    pending = {p.name: list(p.health_urls) for p in processes}
    deadline = time.monotonic() + timeout
    while pending:
        for p in processes:
            if p.name not in pending:
                continue
            code = p.process.poll()
            if code is not None:
                raise NotHealthy(f"the {p.name} exited with code {code} before it was healthy")
            pending[p.name] = [url for url in pending[p.name] if not _answers(url)]
            if not pending[p.name]:
                del pending[p.name]
        if pending and time.monotonic() > deadline:
            waiting = "; ".join(f"the {name} ({', '.join(urls)})" for name, urls in pending.items())
            raise NotHealthy(f"not healthy within {timeout:.0f}s: {waiting}")
        if pending:
            time.sleep(0.2)


def _banner(settings: Settings, processes: list[DevProcess]) -> str:
    api = f"http://localhost:{settings.port}"
    workers = f"\n{' ' * 17}".join(
        f"{p.name.removesuffix(' worker'):14} {p.health_urls[0]}"
        for p in processes
        if p.name.endswith(" worker")
    )
    api_metrics = processes[0].health_urls[1]
    return (
        "\nCourtside is running:\n"
        f"  API            {api}   (docs {api}/docs, metrics {api_metrics})\n"
        f"  PostgreSQL     {settings.database_url.split('@')[-1]}\n"
        f"  Redis          {settings.redis_url}\n"
        f"  S3/SQS (moto)  {settings.aws_endpoint_url}\n"
        f"  SMTP           {settings.smtp_host}:{settings.smtp_port} "
        f"(mail saved to {STATE_DIR / 'mail'})\n"
        f"  Workers        {workers or '(none yet)'}\n"
        "  Demo users     admin@demo.com/admin123, coach@demo.com/coach123, "
        "athlete@demo.com/athlete123\n"
        f"Ctrl-C stops everything; data stays in {STATE_DIR}.\n"
    )


def run_dev(port: int | None = None) -> None:
    started: list[object] = []
    processes: list[DevProcess] = []

    def shutdown() -> None:
        for p in processes:
            if p.process.poll() is None:
                p.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in processes:
            try:
                p.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.process.kill()
        for service in reversed(started):
            service.stop()  # type: ignore[attr-defined]

    # Ctrl-C and SIGTERM stop everything, from the first service on, even when started as a
    # background job of a shell without job control (which leaves SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    api_port = port or get_settings().port
    if devstack.port_in_use(api_port):
        sys.exit(
            f"Port {api_port} is already in use: stop what runs there, or pick another "
            "port with `courtside dev --port N` (or PORT=N make dev)."
        )
    try:
        env = _start_backing_services(started)
        env["PORT"] = str(api_port)
        os.environ.update(env)
        get_settings.cache_clear()
        settings = _prepare(get_settings())

        _step("starting the API and the workers…")
        _start_processes(processes, api_port, devstack.free_port())
        try:
            wait_until_healthy(processes, READY_TIMEOUT_SECONDS)
        except NotHealthy as exc:
            print(f"courtside dev: {exc}; stopping everything.", file=sys.stderr, flush=True)
            sys.exit(1)
        print(_banner(settings, processes), flush=True)

        while all(p.process.poll() is None for p in processes):
            time.sleep(0.5)
        stopped = ", ".join(
            f"the {p.name} (exit code {p.process.returncode})"
            for p in processes
            if p.process.poll() is not None
        )
        print(f"courtside dev: {stopped} stopped; stopping everything.", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\nStopping…", flush=True)
    finally:
        shutdown()
