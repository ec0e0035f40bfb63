"""kmock's KubernetesEmulator, made a little more like a real API server: a current server
version, and resourceVersion/uid/generation/creationTimestamp on stored objects."""

import itertools
import uuid
from datetime import UTC, datetime
from typing import Any

import attrs
import kmock
import yaml
from kmock import action

VERBS = {"list", "watch", "get", "create", "update", "patch", "delete"}


@attrs.frozen
class PatchTestFailed(kmock.KubernetesError):
    status: int = 422
    reason: str = "Invalid"
    message: str = "the JSON patch's test operation failed (the object has changed)"


class ClusterEmulator(kmock.KubernetesEmulator):
    _versions = itertools.count(1)

    async def _handle(self, request: Any) -> Any:
        """Stamp objects the way an API server does: uid, creationTimestamp, generation
        (bumped by spec changes) and a new resourceVersion on every write."""
        data = request.data
        if request.resource is not None and data is not None:
            version = str(next(self._versions))
            if request.action == action.CREATE and isinstance(data, dict):
                meta = data.setdefault("metadata", {})
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault(
                    "creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                )
                meta["generation"] = 1
                meta["resourceVersion"] = version
            elif request.action == action.UPDATE and isinstance(data, dict):
                data.setdefault("metadata", {})["resourceVersion"] = version
                if "spec" in data and request.subresource is None:
                    data["metadata"]["generation"] = self._generation(request) + 1
            elif request.action == action.UPDATE and isinstance(data, list):
                self._check_tests(request, data)
                data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})
                if any(str(op.get("path", "")).startswith("/spec") for op in data):
                    data.append(
                        {
                            "op": "add",
                            "path": "/metadata/generation",
                            "value": self._generation(request) + 1,
                        }
                    )
        return await super()._handle(request)

    def _check_tests(self, request: Any, ops: list[dict[str, Any]]) -> None:
        # A real server answers a failed `test` with 422, which kopf treats as "changed".
        key = (request.resource, request.namespace, request.name)
        try:
            current = self.objects[key].get("metadata", {}).get("resourceVersion")
        except KeyError:
            return
        for op in ops:
            if (
                op.get("op") == "test"
                and op.get("path") == "/metadata/resourceVersion"
                and op.get("value") != current
            ):
                raise PatchTestFailed()

    def _generation(self, request: Any) -> int:
        key = (request.resource, request.namespace, request.name)
        try:
            return int(self.objects[key].get("metadata", {}).get("generation", 0))
        except (KeyError, TypeError):
            return 0

    async def _serve_server_version(self, request: Any) -> dict[str, str]:
        return {
            "major": "1",
            "minor": "31",
            "gitVersion": "v1.31.0",
            "platform": "linux/amd64",
            "gitCommit": "0" * 40,
            "gitTreeState": "clean",
            "buildDate": "2024-08-13T00:00:00Z",
            "goVersion": "go1.22.5",
            "compiler": "gc",
        }

    async def _serve_version(self, request: Any) -> Any:
        # kmock 0.8 answers /api/v1 with groupVersion "/v1"; real servers say "v1".
        payload = await super()._serve_version(request)
        if isinstance(payload, dict) and str(payload.get("groupVersion", "")).startswith("/"):
            payload["groupVersion"] = payload["groupVersion"][1:]
        return payload

    def serve(
        self, resource: str, kind: str, *, namespaced: bool, subresources: set[str] | None = None
    ) -> None:
        self.resources[resource] = kmock.ResourceInfo(
            kind=kind, namespaced=namespaced, verbs=VERBS, subresources=subresources or set()
        )


def serve_operator_resources(emulator: kmock.KubernetesEmulator) -> None:
    """The API resources the Tenant operator uses (CRDs, namespaces, events, Secrets, Tenants)."""
    emulator.serve(
        "apiextensions.k8s.io/v1/customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
    )
    emulator.serve("v1/namespaces", "Namespace", namespaced=False)
    emulator.serve("v1/events", "Event", namespaced=True)
    emulator.serve("v1/secrets", "Secret", namespaced=True)
    emulator.serve("courtside.dev/v1/tenants", "Tenant", namespaced=False, subresources={"status"})


def kubeconfig(url: str, namespace: str = "default") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": url}}],
            "users": [{"name": "tester", "user": {"token": "test-token"}}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {"cluster": "emulator", "user": "tester", "namespace": namespace},
                }
            ],
            "current-context": "emulator",
        }
    )
