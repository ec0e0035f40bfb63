"""Shared by the benchmarks: real services (reused from the environment or started),
a migrated database, and uvicorn servers in subprocesses."""

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from app.infra.dbadmin import bootstrap, drop_database, migrate
from app.infra.settings import Settings
from courtside.local import devstack

ROOT = Path(__file__).resolve().parent.parent


class Stack:
    """PostgreSQL + Redis for a benchmark run, and the env its servers get."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="courtside-bench-"))
        self._stop: list[object] = []
        admin = os.environ.get("TEST_DATABASE_URL")
        if not admin:
            pg = devstack.EmbeddedPostgres(self.workdir / "pgdata").start()
            self._stop.append(pg)
            admin = pg.admin_url
        self.admin_url = admin
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            redis = devstack.RedisServer(self.workdir / "redis").start()
            self._stop.append(redis)
            redis_url = redis.url
        database = f"courtside_bench_{os.getpid()}"
        self.database = database
        # On a server we didn't start, drop our database again at the end.
        self._drop_database = bool(os.environ.get("TEST_DATABASE_URL"))

        def url(role: str) -> str:
            return (
                make_url(admin)
                .set(
                    drivername="postgresql+asyncpg", username=role, password=role, database=database
                )
                .render_as_string(hide_password=False)
            )

        self.env = {
            **os.environ,
            "DATABASE_URL": url("courtside_app"),
            "MIGRATION_DATABASE_URL": url("courtside_owner"),
            "RELAY_DATABASE_URL": url("courtside_relay"),
            "REDIS_URL": redis_url,
            "LOG_LEVEL": "WARNING",
        }
        self.superuser_dsn = (
            make_url(admin).set(database=database).render_as_string(hide_password=False)
        )
        os.environ.update(self.env)
        self.settings = Settings()
        asyncio.run(bootstrap(admin, self.settings))
        migrate(self.settings)

    def serve(
        self,
        argv: list[str],
        port: int,
        env: dict[str, str] | None = None,
        ready_path: str = "/healthz",
    ) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            argv,
            env={**self.env, **(env or {})},
            cwd=ROOT,  # noqa: S603
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self._stop.append(_Process(process))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=1).status_code < 500:
                    return process
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"{argv} did not start")

    def serve_api(self, port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """The product's API (`courtside api`) on 127.0.0.1:`port`, once it answers."""
        argv = [python(), "-m", "courtside.cli", "api", "--host", "127.0.0.1", "--port", str(port)]
        return self.serve(argv, port, env)

    def close(self) -> None:
        for item in reversed(self._stop):
            item.stop()  # type: ignore[attr-defined]
        if self._drop_database:
            asyncio.run(drop_database(self.admin_url, self.database))
        shutil.rmtree(self.workdir, ignore_errors=True)


class _Process:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def python() -> str:
    return sys.executable


def ensure_wrk() -> str | None:
    """wrk (Debian package) if present or installable here; None means: use the fallback."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "wrk"],
        check=False,  # noqa: S607
        capture_output=True,
    )
    return shutil.which("wrk")
