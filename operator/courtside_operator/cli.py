"""What `courtside tenants …` runs: the Tenant operator's reconcile without a cluster.

apply validates each manifest against the CRD (schema and CEL rules) and runs the same
reconcile the operator runs; the applied manifests and their status are kept in
OPERATOR_STATE_DIR, credentials in 0600 files beside them.
"""

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from app.infra.settings import Settings
from courtside_operator.crd import ManifestError, validate_manifest
from courtside_operator.reconcile import TenantReconciler
from courtside_operator.secrets import FileSecretStore
from courtside_operator.spec import TenantSpec


class LocalState:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.secrets = FileSecretStore(folder / "secrets")

    def manifest(self, name: str) -> dict[str, Any] | None:
        path = self.folder / f"{name}.yaml"
        return yaml.safe_load(path.read_text()) if path.exists() else None

    def save(self, manifest: dict[str, Any], status: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = manifest["metadata"]["name"]
        (self.folder / f"{name}.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
        (self.folder / f"{name}.status.json").write_text(json.dumps(status, indent=2))

    def status(self, name: str) -> dict[str, Any] | None:
        path = self.folder / f"{name}.status.json"
        return json.loads(path.read_text()) if path.exists() else None

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.yaml"))

    def forget(self, name: str) -> None:
        for suffix in (".yaml", ".status.json"):
            (self.folder / f"{name}{suffix}").unlink(missing_ok=True)


def load_manifests(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


async def apply(settings: Settings, paths: list[Path], state: LocalState) -> int:
    """Validate and reconcile each manifest; returns a process exit code."""
    reconciler = TenantReconciler(settings)
    failed = 0
    try:
        for path in paths:
            for raw in load_manifests(path):
                name = (raw.get("metadata") or {}).get("name", "?")
                previous = state.manifest(name)
                try:
                    manifest = validate_manifest(raw, previous=previous)
                except ManifestError as exc:
                    print(f"tenant/{name} rejected:", *exc.errors, sep="\n  ", file=sys.stderr)
                    failed += 1
                    continue
                spec = TenantSpec.model_validate(manifest["spec"])
                old_status = state.status(name) or {}
                generation = int(old_status.get("observedGeneration") or 0) + (
                    0 if previous and previous.get("spec") == manifest["spec"] else 1
                )
                outcome = await reconciler.reconcile(
                    spec,
                    state.secrets,
                    generation=generation,
                    previous=old_status.get("conditions"),
                )
                state.save(manifest, outcome.status)
                verb = "configured" if outcome.actions else "unchanged"
                print(f"tenant/{name} {verb}" + "".join(f"\n  - {a}" for a in outcome.actions))
                # Not ok fails the command; a condition such as AdminInvited=False (a mail
                # the next apply sends again) is shown without failing it.
                failed += 0 if outcome.ok else 1
                for c in outcome.status["conditions"]:
                    if c["status"] != "True":
                        print(f"  {c['type']}: {c['reason']}: {c['message']}", file=sys.stderr)
    finally:
        await reconciler.close()
    return 1 if failed else 0


async def delete(settings: Settings, name: str, state: LocalState) -> int:
    manifest = state.manifest(name)
    if manifest is None:
        print(f"tenant/{name} not found", file=sys.stderr)
        return 1
    reconciler = TenantReconciler(settings)
    try:
        actions = await reconciler.finalize(
            TenantSpec.model_validate(manifest["spec"]), state.secrets
        )
    finally:
        await reconciler.close()
    state.forget(name)
    print(f"tenant/{name} deleted" + "".join(f"\n  - {a}" for a in actions))
    return 0
