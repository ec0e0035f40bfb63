import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def run(services, state_dir, *args):
    env = {**os.environ, **services.env, "OPERATOR_STATE_DIR": str(state_dir)}
    return subprocess.run(
        [sys.executable, "-m", "courtside.cli", "tenants", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_apply_list_status_and_delete_without_a_cluster(services, tmp_path, superuser_conn):
    manifest = yaml.safe_load((ROOT / "examples/tenants/riverside-tennis.yaml").read_text())
    slug = f"riverside-{tmp_path.name[-6:].lower().replace('_', '-')}".strip("-")
    manifest["metadata"]["name"] = manifest["spec"]["slug"] = slug
    path = tmp_path / "tenant.yaml"
    path.write_text(yaml.safe_dump(manifest))

    first = run(services, tmp_path / "state", "apply", "-f", str(path))
    assert first.returncode == 0, first.stderr
    assert f"tenant/{slug} configured" in first.stdout and "role tenant_" in first.stdout
    second = run(services, tmp_path / "state", "apply", "-f", str(path))
    assert second.returncode == 0 and f"tenant/{slug} unchanged" in second.stdout

    listed = run(services, tmp_path / "state", "list")
    assert slug in listed.stdout and "True" in listed.stdout
    status = yaml.safe_load(run(services, tmp_path / "state", "status", slug).stdout)
    assert {c["type"] for c in status["status"]["conditions"]} == {
        "Ready",
        "DatabaseReady",
        "QuotasApplied",
        "RateLimitsApplied",
        "AdminInvited",
    }

    deleted = run(services, tmp_path / "state", "delete", slug)
    assert deleted.returncode == 0 and "dropped" in deleted.stdout


def test_apply_rejects_an_invalid_manifest_with_the_reason(services, tmp_path):
    bad = ROOT / "examples/tenants/invalid/upload-larger-than-quota.yaml"
    result = run(services, tmp_path / "state", "apply", "-f", str(bad))
    assert result.returncode == 1
    assert "maxUploadBytes must not exceed quotaBytes" in result.stderr
