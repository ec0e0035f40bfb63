"""Where a tenant's database credentials are kept: a Kubernetes Secret under the operator,
a local file for `courtside tenants apply` without a cluster."""

import base64
import json
import os
from pathlib import Path
from typing import Any, Protocol

import aiohttp

MANAGED_BY = ("app.kubernetes.io/managed-by", "courtside-operator")


class SecretConflict(Exception):
    """A Secret by that name exists but was not written by the operator for this Tenant:
    it is neither read (its password could be someone's choice) nor overwritten."""


class SecretStore(Protocol):
    """`owner` is the Tenant's ownerReference: a store that can tell refuses (with
    SecretConflict) to read, overwrite or delete a Secret it did not write for that owner."""

    async def get(
        self, name: str, owner: dict[str, Any] | None = None
    ) -> dict[str, str] | None: ...

    async def put(self, name: str, data: dict[str, str], owner: dict[str, Any] | None) -> None:
        """Make the Secret's data exactly `data` (keys not in it are removed)."""
        ...

    async def delete(self, name: str, owner: dict[str, Any] | None = None) -> None: ...


class FileSecretStore:
    """One 0600 JSON file per secret (local use only)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    async def get(self, name: str, owner: dict[str, Any] | None = None) -> dict[str, str] | None:
        path = self._path(name)
        return dict(json.loads(path.read_text())) if path.exists() else None

    async def put(self, name: str, data: dict[str, str], owner: dict[str, Any] | None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(name)
        path.touch(mode=0o600, exist_ok=True)
        os.chmod(path, 0o600)
        path.write_text(json.dumps(data))

    async def delete(self, name: str, owner: dict[str, Any] | None = None) -> None:
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

    def _check_ours(self, name: str, secret: dict[str, Any], owner: dict[str, Any] | None) -> None:
        """Ours: our label, and (given an owner) a controller reference to this Tenant."""
        meta = secret.get("metadata") or {}
        label, value = MANAGED_BY
        labelled = (meta.get("labels") or {}).get(label) == value
        owned = owner is None or any(
            ref.get("uid") == owner["uid"] and ref.get("kind") == owner["kind"]
            for ref in meta.get("ownerReferences") or []
        )
        if not (labelled and owned):
            raise SecretConflict(
                f"Secret {self.namespace}/{name} exists but was not created by the operator "
                f"for this Tenant; it is left untouched (delete or rename it to proceed)"
            )

    async def _fetch(self, name: str) -> dict[str, Any] | None:
        status, body = await self._request("GET", f"{self.base}/{name}")
        if status == 404:
            return None
        if status >= 400:
            raise RuntimeError(f"reading Secret {name}: HTTP {status}")
        return dict(body)

    async def get(self, name: str, owner: dict[str, Any] | None = None) -> dict[str, str] | None:
        secret = await self._fetch(name)
        if secret is None:
            return None
        self._check_ours(name, secret, owner)
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    async def put(self, name: str, data: dict[str, str], owner: dict[str, Any] | None) -> None:
        label, value = MANAGED_BY
        secret: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/basic-auth",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {label: value},
                **({"ownerReferences": [owner]} if owner else {}),
            },
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        status, _ = await self._request("POST", self.base, secret)
        if status == 409:
            current = await self._fetch(name)
            if current is None:
                raise RuntimeError(f"writing Secret {name}: it was deleted meanwhile")
            self._check_ours(name, current, owner)
            # Only the version just checked: a Secret replaced meanwhile makes this a 409.
            secret["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
            # A merge patch keeps keys it doesn't name: null removes those `data` no longer
            # has (a retired key such as an older operator's invitation token).
            secret["data"] = {
                **{key: None for key in current.get("data") or {} if key not in data},
                **secret["data"],
            }
            status, _ = await self._request(
                "PATCH", f"{self.base}/{name}", secret, "application/merge-patch+json"
            )
        if status >= 400:
            raise RuntimeError(f"writing Secret {name}: HTTP {status}")

    async def delete(self, name: str, owner: dict[str, Any] | None = None) -> None:
        current = await self._fetch(name)
        if current is None:
            return
        self._check_ours(name, current, owner)
        uid = current["metadata"].get("uid")
        options = {"preconditions": {"uid": uid}} if uid else None
        status, _ = await self._request("DELETE", f"{self.base}/{name}", options)
        if status >= 400 and status != 404:
            raise RuntimeError(f"deleting Secret {name}: HTTP {status}")
