"""`courtside dev` from nothing: services come up, demo users log in, Ctrl-C stops it all,
and a second run keeps the data."""

import os
import signal
import subprocess
import sys
import time
import uuid
from email import message_from_bytes

import httpx

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


def _start(state_dir, port):
    env = {k: v for k, v in os.environ.items() if k not in HARNESS_VARS}
    env.update(
        {
            "COURTSIDE_STATE_DIR": str(state_dir),
            "LOG_LEVEL": "WARNING",
            "METRICS_PORT": str(free_port()),
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
