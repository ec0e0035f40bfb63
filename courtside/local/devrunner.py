"""`courtside dev`: the whole product on a laptop, no containers.

Starts (unless the environment already points at one) PostgreSQL, Redis, moto's S3+SQS
server and an SMTP server, on free loopback ports; bootstraps roles, migrates, seeds the
demo tenant; then runs the API, every worker and the operator's CLI reconcile as child
processes. State lives in .courtside/ so a second run keeps the data; Ctrl-C stops all.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.infra.aws import ensure_resources
from app.infra.dbadmin import ROOT, bootstrap, migrate
from app.infra.settings import Settings, get_settings
from courtside.local import devstack
from courtside.local.seed import seed_demo
from workers import WORKERS

STATE_DIR = Path(os.environ.get("COURTSIDE_STATE_DIR", ".courtside")).resolve()


def _runtime_urls(host_port: str) -> dict[str, str]:
    database = "courtside"
    return {
        "DATABASE_URL": f"postgresql+asyncpg://courtside_app:courtside_app@{host_port}/{database}",
        "MIGRATION_DATABASE_URL": f"postgresql+asyncpg://courtside_owner:courtside_owner@{host_port}/{database}",
        "RELAY_DATABASE_URL": f"postgresql+asyncpg://courtside_relay:courtside_relay@{host_port}/{database}",
    }


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def run_dev(port: int | None = None) -> None:
    env: dict[str, str] = {}
    started: list[object] = []
    children: list[subprocess.Popen[bytes]] = []

    def shutdown(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
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
        if "DATABASE_URL" not in os.environ:
            pg = devstack.EmbeddedPostgres(STATE_DIR / "pgdata").start()
            started.append(pg)
            env.update(_runtime_urls(f"127.0.0.1:{pg.port}"))
            env["DATABASE_ADMIN_URL"] = pg.admin_url
        if "REDIS_URL" not in os.environ:
            redis = devstack.RedisServer(STATE_DIR / "redis", persist=True).start()
            started.append(redis)
            env["REDIS_URL"] = redis.url
        if "AWS_ENDPOINT_URL" not in os.environ and "AWS_ENDPOINT" not in os.environ:
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
            smtp = devstack.SmtpServer(mail_dir=STATE_DIR / "mail").start()
            started.append(smtp)
            env.update({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port)})
        if port is not None:
            env["PORT"] = str(port)
        os.environ.update(env)
        get_settings.cache_clear()
        settings: Settings = get_settings()

        admin_url = os.environ.get("DATABASE_ADMIN_URL")
        if admin_url:
            asyncio.run(bootstrap(admin_url, settings))
        migrate(settings)
        queues = asyncio.run(ensure_resources(settings))
        os.environ.setdefault("SQS_NOTIFICATIONS_QUEUE_URL", queues["notifications"])
        os.environ.setdefault("SQS_MEDIA_QUEUE_URL", queues["media"])
        os.environ.setdefault("OPERATOR_STATE_DIR", str(STATE_DIR / "tenants"))
        get_settings.cache_clear()
        settings = get_settings()
        # The demo tenant arrives the way platform engineers onboard one: a Tenant manifest.
        from courtside_operator.cli import LocalState, apply

        if (
            asyncio.run(
                apply(
                    settings,
                    [ROOT / "examples" / "tenants" / "demo-academy.yaml"],
                    LocalState(Path(settings.operator_state_dir)),
                )
            )
            != 0
        ):
            sys.exit("applying the demo Tenant manifest failed")
        asyncio.run(seed_demo(settings))

        exe = [sys.executable, "-m", "courtside.cli"]
        children.append(subprocess.Popen([*exe, "api"]))  # noqa: S603
        # The API's metrics take METRICS_PORT; each worker the next one up.
        for index, name in enumerate(sorted(WORKERS), start=1):
            worker_env = {**os.environ, "METRICS_PORT": str(settings.metrics_port + index)}
            children.append(subprocess.Popen([*exe, "worker", name], env=worker_env))  # noqa: S603

        api = f"http://localhost:{settings.port}"
        print(
            "\nCourtside is running:\n"
            f"  API            {api}   (docs {api}/docs, "
            f"metrics http://localhost:{settings.metrics_port}/metrics)\n"
            f"  PostgreSQL     {settings.database_url.split('@')[-1]}\n"
            f"  Redis          {settings.redis_url}\n"
            f"  S3/SQS (moto)  {settings.aws_endpoint_url}\n"
            f"  SMTP           {settings.smtp_host}:{settings.smtp_port} "
            f"(mail saved to {STATE_DIR / 'mail'})\n"
            f"  Workers        {', '.join(sorted(WORKERS)) or '(none yet)'}\n"
            "  Demo users     admin@demo.com/admin123, coach@demo.com/coach123, "
            "athlete@demo.com/athlete123\n"
            "Ctrl-C stops everything; data stays in .courtside/.\n",
            flush=True,
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        failed = [c.args for c in children if c.poll() is not None]
        print(f"A process stopped: {failed}; shutting down.", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nStopping…", flush=True)
    finally:
        shutdown()
