"""Where a tenant's database credentials are kept: a Kubernetes Secret under the operator,
a local file for `courtside tenants apply` without a cluster."""

import base64
import json
import os
from pathlib import Path
from typing import Any, Protocol

import aiohttp


class SecretStore(Protocol):
    async def get(self, name: str) -> dict[str, str] | None: ...
    async def put(self, name: str, data: dict[str, str], owner: dict[str, Any] | None) -> None: ...
    async def delete(self, name: str) -> None: ...


class FileSecretStore:
    """One 0600 JSON file per secret (local use only)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    async def get(self, name: str) -> dict[str, str] | None:
        path = self._path(name)
        return dict(json.loads(path.read_text())) if path.exists() else None

    async def put(self, name: str, data: dict[str, str], owner: dict[str, Any] | None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(name)
        path.touch(mode=0o600, exist_ok=True)
        os.chmod(path, 0o600)
        path.write_text(json.dumps(data))

    async def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)


class KubernetesSecretStore:
    """`kubernetes.io/basic-auth` Secrets in one namespace, over the API server's REST API
    with the operator's own credentials (kopf's login)."""

    def __init__(
        self, server: str, namespace: str, headers: dict[str, str], ssl: Any = None
    ) -> None:
        self.base = f"{server.rstrip('/')}/api/v1/namespaces/{namespace}/secrets"
        self.namespace = namespace
        self.headers = headers
        self.ssl = ssl

    async def _request(
        self, method: str, url: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        headers = {**self.headers, "Content-Type": content_type}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.request(
                method,
                url,
                data=json.dumps(body) if body is not None else None,
                ssl=self.ssl,
                timeout=aiohttp.ClientTimeout(total=30),
            ) as response,
        ):
            text = await response.text()
            return response.status, (json.loads(text) if text else None)

    async def get(self, name: str) -> dict[str, str] | None:
        status, body = await self._request("GET", f"{self.base}/{name}")
        if status == 404:
            return None
        if status >= 400:
            raise RuntimeError(f"reading Secret {name}: HTTP {status}")
        return {k: base64.b64decode(v).decode() for k, v in (body.get("data") or {}).items()}

    async def put(self, name: str, data: dict[str, str], owner: dict[str, Any] | None) -> None:
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/basic-auth",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/managed-by": "courtside-operator"},
                **({"ownerReferences": [owner]} if owner else {}),
            },
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        status, _ = await self._request("POST", self.base, secret)
        if status == 409:
            status, _ = await self._request(
                "PATCH", f"{self.base}/{name}", secret, "application/merge-patch+json"
            )
        if status >= 400:
            raise RuntimeError(f"writing Secret {name}: HTTP {status}")

    async def delete(self, name: str) -> None:
        status, _ = await self._request("DELETE", f"{self.base}/{name}")
        if status >= 400 and status != 404:
            raise RuntimeError(f"deleting Secret {name}: HTTP {status}")
