"""kmock's KubernetesEmulator, made a little more like a real API server: a current server
version, and resourceVersion/uid/generation/creationTimestamp on stored objects."""

from typing import Any

import kmock
import yaml

VERBS = {"list", "watch", "get", "create", "update", "patch", "delete"}


class ClusterEmulator(kmock.KubernetesEmulator):
    async def _serve_server_version(self, request: Any) -> dict[str, str]:
        return {"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "linux/amd64",
                "gitCommit": "0" * 40, "gitTreeState": "clean", "buildDate": "2024-08-13T00:00:00Z",
                "goVersion": "go1.22.5", "compiler": "gc"}

    async def _serve_version(self, request: Any) -> Any:
        # kmock 0.8 answers /api/v1 with groupVersion "/v1"; real servers say "v1".
        payload = await super()._serve_version(request)
        if isinstance(payload, dict) and str(payload.get("groupVersion", "")).startswith("/"):
            payload["groupVersion"] = payload["groupVersion"][1:]
        return payload

    def serve(self, resource: str, kind: str, *, namespaced: bool,
              subresources: set[str] | None = None) -> None:
        self.resources[resource] = kmock.ResourceInfo(
            kind=kind, namespaced=namespaced, verbs=VERBS, subresources=subresources or set())


def kubeconfig(url: str, namespace: str = "default") -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "tester", "user": {"token": "test-token"}}],
        "contexts": [{"name": "emulator", "context": {
            "cluster": "emulator", "user": "tester", "namespace": namespace}}],
        "current-context": "emulator",
    })
