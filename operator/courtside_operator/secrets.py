"""Where a tenant's database credentials are kept: a Kubernetes Secret under the operator
(reached with the credentials kopf's login resolved), a local file for `courtside tenants
apply` without a cluster."""

import base64
import json
import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import kopf

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


class KubernetesApiError(Exception):
    """The API server could not be reached (TLS, DNS, connection, timeout: `status` None)
    or answered with an error (`status` is the HTTP status; the message has the API's)."""

    reason = "KubernetesApiError"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class KubernetesApi:
    """The API server, reached with the credentials kopf's login resolved, as kopf's own
    client does (kopf/_cogs/clients/auth.py): the cluster CA (`ca_path`/`ca_data`) or
    `insecure`, a client certificate and key, a bearer token or basic auth, a proxy.

    One session, opened on first use and kept (connections and TLS sessions are reused);
    `close()` ends it. `per_request=True` opens one per request instead (callers that never
    close it, such as tests)."""

    def __init__(
        self,
        info: kopf.ConnectionInfo,
        *,
        headers: Mapping[str, str] | None = None,
        per_request: bool = False,
        timeout: float = 30,
    ) -> None:
        self.info = info
        self.server = info.server.rstrip("/")
        self.headers = {**info.as_http_headers(), **(headers or {})}
        self.per_request = per_request
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _new_session(self) -> aiohttp.ClientSession:
        try:
            tls = self.info.as_ssl_context()
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise KubernetesApiError(
                f"cannot load the Kubernetes API's CA or client certificate: {exc}"
            ) from exc
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=tls, limit=20),
            headers=self.headers,
            proxy=self.info.proxy_url,
            trust_env=self.info.trust_env,
        )

    async def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        """(status, decoded JSON body or None); no answer at all is a KubernetesApiError."""
        if self.per_request:
            async with self._new_session() as session:
                return await self._send(session, method, path, body, content_type)
        if self._session is None or self._session.closed:
            self._session = self._new_session()
        return await self._send(self._session, method, path, body, content_type)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        body: Any,
        content_type: str,
    ) -> tuple[int, Any]:
        try:
            async with session.request(
                method,
                self.server + path,
                data=json.dumps(body) if body is not None else None,
                headers={"Content-Type": content_type},
                timeout=self.timeout,
            ) as response:
                text = await response.text()
                status = response.status
        except aiohttp.ClientSSLError as exc:
            raise KubernetesApiError(
                f"TLS with the Kubernetes API at {self.server} failed: {exc}"
            ) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise KubernetesApiError(
                f"Kubernetes API at {self.server} unreachable: {type(exc).__name__} {exc}"
            ) from exc
        try:
            return status, (json.loads(text) if text else None)
        except ValueError:
            return status, {"message": text[:200]}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _api_error(method: str, path: str, status: int, body: Any) -> KubernetesApiError:
    """An error answer, with what the API server said (a metav1.Status: reason, message)."""
    said = body if isinstance(body, dict) else {}
    detail = ": ".join(str(said[k]) for k in ("reason", "message") if said.get(k))
    return KubernetesApiError(
        f"the Kubernetes API answered {method} {path} with HTTP {status}"
        + (f" {detail}" if detail else ""),
        status=status,
    )


class KubernetesSecretStore:
    """`kubernetes.io/basic-auth` Secrets in one namespace, over the API server's REST API
    with the operator's own credentials (kopf's login, through `api`). A plain URL is taken
    for an API without credentials or TLS (an emulator, `kubectl proxy`). Any failure to
    talk to the API server is a KubernetesApiError."""

    def __init__(
        self,
        api: KubernetesApi | str,
        namespace: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(api, str):
            api = KubernetesApi(kopf.ConnectionInfo(server=api), headers=headers, per_request=True)
        self.api = api
        self.path = f"/api/v1/namespaces/{namespace}/secrets"
        self.namespace = namespace

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
        status, body = await self.api.request("GET", f"{self.path}/{name}")
        if status == 404:
            return None
        if status >= 400:
            raise _api_error("GET", f"{self.path}/{name}", status, body)
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
        method, path = "POST", self.path
        status, body = await self.api.request(method, path, secret)
        if status == 409:
            current = await self._fetch(name)
            if current is None:
                raise KubernetesApiError(
                    f"writing Secret {self.namespace}/{name}: it was deleted meanwhile", 409
                )
            self._check_ours(name, current, owner)
            # Only the version just checked: a Secret replaced meanwhile makes this a 409.
            secret["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
            # A merge patch keeps keys it doesn't name: null removes those `data` no longer
            # has (a retired key such as an older operator's invitation token).
            secret["data"] = {
                **{key: None for key in current.get("data") or {} if key not in data},
                **secret["data"],
            }
            method, path = "PATCH", f"{self.path}/{name}"
            status, body = await self.api.request(
                method, path, secret, "application/merge-patch+json"
            )
        if status >= 400:
            raise _api_error(method, path, status, body)

    async def delete(self, name: str, owner: dict[str, Any] | None = None) -> None:
        current = await self._fetch(name)
        if current is None:
            return
        self._check_ours(name, current, owner)
        uid = current["metadata"].get("uid")
        options = {"preconditions": {"uid": uid}} if uid else None
        status, body = await self.api.request("DELETE", f"{self.path}/{name}", options)
        if status >= 400 and status != 404:
            raise _api_error("DELETE", f"{self.path}/{name}", status, body)
