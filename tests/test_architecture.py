"""The import rules ([tool.importlinter] in pyproject.toml) hold for the code, and each one bites.

`make lint` runs the same check; here it also fails `make test`. Each contract is shown to fail
on a copy of the packages with one forbidden import added, so a rule that stopped matching
anything (a renamed package, a wildcard gone wrong) cannot pass silently.
"""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
# Where each root package lives (the operator's is under operator/, see pyproject.toml).
PACKAGE_DIRS = ["app", "workers", "courtside", "operator/courtside_operator"]

# One forbidden import per contract: (module file, the module it now imports, the line added).
VIOLATIONS = {
    "app-standalone": ("app/infra/aws.py", "workers", "import workers"),
    "workers-standalone": (
        "workers/runtime.py",
        "courtside_operator",
        "import courtside_operator",
    ),
    "operator-standalone": ("operator/courtside_operator/spec.py", "workers", "import workers"),
    "infra-below-domains": ("app/infra/settings.py", "app.posts", "import app.posts"),
    "services-below-routers": (
        "app/posts/service.py",
        "app.spaces.router",
        "import app.spaces.router",
    ),
}


def contract_ids() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [contract["id"] for contract in config["tool"]["importlinter"]["contracts"]]


def lint_imports(project: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """Run import-linter on the packages under `project` (not the installed ones)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(project), str(project / "operator")])}
    command = [str(LINT_IMPORTS), "--no-cache", "--no-logo"]
    command += [f"--contract={contract}" for contract in contracts]
    return subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def module_name(path: str) -> str:
    return path.removeprefix("operator/").removesuffix(".py").replace("/", ".")


def test_the_code_keeps_every_import_rule():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contract_ids())} kept, 0 broken." in result.stdout


def test_every_rule_has_a_violation_that_proves_it():
    assert sorted(VIOLATIONS) == sorted(contract_ids())


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """The root packages and pyproject.toml, copied: Python sources only."""
    for package in PACKAGE_DIRS:
        shutil.copytree(
            ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize("contract", sorted(VIOLATIONS))
def test_a_forbidden_import_breaks_the_rule(project_copy: Path, contract: str):
    path, imported, line = VIOLATIONS[contract]
    assert lint_imports(project_copy, contract).returncode == 0  # the copy is clean first

    with (project_copy / path).open("a") as module:
        module.write(f"\n{line}\n")
    result = lint_imports(project_copy, contract)

    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
    assert f"{module_name(path)} -> {imported}" in result.stdout
