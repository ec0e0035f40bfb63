"""`courtside dev` from nothing: services come up, demo users log in, Ctrl-C stops it all,
and a second run keeps the data. Two stacks run side by side; the banner means every process
answers; a process that does not come up stops the stack with its name."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from email import message_from_bytes

import httpx
import pytest

from courtside.local.devstack import free_port
from tests.factories import token_in

HARNESS_VARS = (
    "DATABASE_URL",
    "MIGRATION_DATABASE_URL",
    "RELAY_DATABASE_URL",
    "REDIS_URL",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT",
    "SMTP_HOST",
    "SMTP_PORT",
    "SQS_NOTIFICATIONS_QUEUE_URL",
    "SQS_MEDIA_QUEUE_URL",
    "S3_BUCKET",
    "DATABASE_ADMIN_URL",
)


def _start(state_dir, port, **extra_env):
    env = {k: v for k, v in os.environ.items() if k not in HARNESS_VARS}
    env.update(
        {
            "COURTSIDE_STATE_DIR": str(state_dir),
            "LOG_LEVEL": "WARNING",
            "METRICS_PORT": str(free_port()),
            **extra_env,
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "courtside.cli", "dev", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As a background job of a shell without job control starts it: SIGINT ignored.
        # Ctrl-C (SIGINT) must still stop everything.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )


def _wait_for_api(process, url, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the local stack did not become ready")


def _mailed_token(mail_dir, email, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(mail_dir.glob("*.eml")) if mail_dir.exists() else []:
            message = message_from_bytes(path.read_bytes())
            if str(message["To"]).lower() == email:
                return token_in(message)
        time.sleep(0.2)
    raise AssertionError(f"no sign-up mail for {email} in {mail_dir}")


def _stop(process):
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    return output


def test_dev_stack_runs_keeps_data_and_stops_cleanly(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = _start(tmp_path, port)
    try:
        _wait_for_api(first, url)
        login = httpx.post(
            f"{url}/auth/login", json={"email": "coach@demo.com", "password": "coach123"}
        )
        assert login.status_code == 200 and login.json()["role"] == "COACH"
        email = f"persist-{uuid.uuid4().hex[:8]}@example.com"
        registered = httpx.post(
            f"{url}/auth/register",
            json={"email": email, "name": "P", "tenant_name": "Persisted"},
        )
        assert registered.status_code == 202
        # The sign-up link arrives in the local mail folder, as a developer would read it.
        verified = httpx.post(
            f"{url}/auth/register/verify",
            json={"token": _mailed_token(tmp_path / "mail", email), "password": "kept across runs"},
        )
        assert verified.status_code == 201
    finally:
        output = _stop(first)
    assert first.returncode is not None
    assert "Courtside is running" in output and "Demo users" in output
    # Everything it started is gone: the port is free again.
    try:
        httpx.get(f"{url}/healthz", timeout=1)
        raise AssertionError("the API still answers after Ctrl-C")
    except httpx.ConnectError:
        pass

    second = _start(tmp_path, port)
    try:
        _wait_for_api(second, url)
        again = httpx.post(
            f"{url}/auth/login", json={"email": email, "password": "kept across runs"}
        )
        assert again.status_code == 200
        demo = httpx.post(
            f"{url}/auth/login", json={"email": "admin@demo.com", "password": "admin123"}
        )
        assert demo.status_code == 200
    finally:
        _stop(second)


BANNER_END = "Ctrl-C stops everything"


class Output:
    """Reads a process's output on a thread; `banner()` waits for the banner's last line."""

    def __init__(self, process):
        self.process = process
        self.lines = []
        self.banner_seen = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)
            if line.startswith(BANNER_END):
                self.banner_seen.set()

    def banner(self, timeout=180):
        assert self.banner_seen.wait(timeout), "".join(self.lines)
        start = max(i for i, line in enumerate(self.lines) if "Courtside is running" in line)
        return "".join(self.lines[start:])

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)
        self.thread.join(timeout=10)
        return "".join(self.lines)


def _assert_every_listed_port_answers(banner):
    addresses = set(re.findall(r"(?:localhost|127\.0\.0\.1):(\d+)", banner))
    # The API, its metrics, PostgreSQL, Redis, moto, SMTP and four workers' health ports.
    assert len(addresses) >= 10, banner
    for port in addresses:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=2):
            pass
    for url in re.findall(
        r"http://localhost:\d+/\S*[a-z]|http://127\.0\.0\.1:\d+/\S*[a-z]", banner
    ):
        assert httpx.get(url, timeout=2).status_code == 200, url


@pytest.mark.timeout(300)  # two cold starts at once on a small machine
def test_two_stacks_run_side_by_side_each_announcing_only_answering_ports(tmp_path):
    # Same defaults for both (METRICS_PORT included): nothing may bind a fixed port.
    ports = [free_port(), free_port()]
    stacks = [
        Output(_start(tmp_path / f"stack{i}", port, METRICS_PORT="9100"))
        for i, port in enumerate(ports)
    ]
    try:
        for stack, port in zip(stacks, ports, strict=True):
            banner = stack.banner()
            assert f"http://localhost:{port}" in banner
            _assert_every_listed_port_answers(banner)
        for port in ports:
            login = httpx.post(
                f"http://127.0.0.1:{port}/auth/login",
                json={"email": "coach@demo.com", "password": "coach123"},
            )
            assert login.status_code == 200 and login.json()["role"] == "COACH"
        assert all(stack.process.poll() is None for stack in stacks)
    finally:
        for stack in stacks:
            stack.stop()


def test_a_worker_that_cannot_start_stops_the_stack_without_a_banner(tmp_path):
    # An environment that breaks the scheduler alone: this interpreter hook makes
    # `courtside worker scheduler` exit at start, as a crash on import would.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, sys\n"
        "if sys.argv[1:] == ['worker', 'scheduler']:\n"
        "    sys.stderr.write('scheduler broken by the test\\n')\n"
        "    sys.stderr.flush()\n"
        "    os._exit(3)\n"
    )
    port = free_port()
    pythonpath = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    process = _start(tmp_path / "state", port, PYTHONPATH=pythonpath)
    output, _ = process.communicate(timeout=180)
    assert process.returncode != 0
    assert "the scheduler worker exited with code 3 before it was healthy" in output
    assert "stopping everything" in output
    assert "Courtside is running" not in output
    # Everything it started is gone: the API's port is free again.
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_a_process_that_never_answers_is_named_at_the_deadline():
    from courtside.local.devrunner import DevProcess, NotHealthy, wait_until_healthy

    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    url = f"http://127.0.0.1:{free_port()}/healthz"
    try:
        with pytest.raises(NotHealthy) as failure:
            wait_until_healthy([DevProcess("silent worker", silent, [url])], timeout=1)
    finally:
        silent.kill()
        silent.wait()
    assert str(failure.value) == f"not healthy within 1s: the silent worker ({url})"
