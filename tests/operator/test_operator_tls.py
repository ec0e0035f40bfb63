"""The operator against an API server that speaks TLS under a CA of its own and wants
credentials, as every real cluster does: kmock's emulator behind HTTPS, with a CA, a server
certificate and a client certificate made here. The operator logs in from a kubeconfig,
as kopf resolves it; its Secret writes must use the same CA and credentials as kopf."""

import base64
import datetime
import ipaddress
import logging
import ssl
import tempfile
import uuid

import aiohttp.test_utils
import attrs
import httpx
import kmock
import pytest
import yaml
from courtside_operator.secrets import KubernetesApi, KubernetesApiError, KubernetesSecretStore
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.k8s_emulator import ClusterEmulator, serve_operator_resources
from tests.operator.test_kopf_operator import TENANTS, _until, manifest, running_operator

pytestmark = pytest.mark.timeout(120)
TOKEN = "operator-sa-token"
SECRETS = "/api/v1/namespaces/courtside/secrets"


# --- a PKI of our own ---------------------------------------------------------------------


class Issuer:
    """A CA: its key and self-signed certificate, and what it signs."""

    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            _builder(subject, subject, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, name: str, *, server: bool) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM): for 127.0.0.1 (a server) or a client (user `name`)."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = _builder(subject, self.cert.subject, key.public_key()).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        return (
            cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )


def _builder(subject, issuer, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- an API server behind TLS that checks who calls -------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    cluster_ca, client_ca, stranger = Issuer("cluster-ca"), Issuer("client-ca"), Issuer("other")
    folder = tmp_path_factory.mktemp("pki")
    cert, key = cluster_ca.issue("kube-apiserver", server=True)
    (folder / "apiserver.crt").write_bytes(cert)
    (folder / "apiserver.key").write_bytes(key)
    return {
        "cluster_ca": cluster_ca,
        "client_ca": client_ca,
        "stranger": stranger,
        "server_cert": folder / "apiserver.crt",
        "server_key": folder / "apiserver.key",
        "client": client_ca.issue(
            "system:serviceaccount:courtside:courtside-operator", server=False
        ),
    }


@attrs.frozen
class Unauthorized(kmock.KubernetesError):
    status: int = 401
    reason: str = "Unauthorized"
    message: str = "Unauthorized"


@attrs.frozen
class Forbidden(kmock.KubernetesError):
    status: int = 403
    reason: str = "Forbidden"
    message: str = "forbidden"


class GuardedCluster(ClusterEmulator):
    """An API server that answers 401 to a request without the expected bearer token (when
    `token` is set), and 403 to any on a plural in `forbidden` (RBAC); records who called."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.token: str | None = None
        self.forbidden: set[str] = set()
        self.calls: list[tuple[str, str, str | None]] = []

    async def _handle(self, request):
        authorization = request.headers.get("Authorization")
        method = str(request.method.value).upper()
        self.calls.append((method, request.url.path, authorization))
        if self.token is not None and authorization != f"Bearer {self.token}":
            raise Unauthorized()
        plural = getattr(request.resource, "plural", None)
        if plural in self.forbidden:
            raise Forbidden(
                message=f'{plural} is forbidden: User "system:serviceaccount:courtside:'
                f'courtside-operator" cannot {method.lower()} resource "{plural}"'
            )
        return await super()._handle(request)


def _tls_server(context: ssl.SSLContext) -> type[aiohttp.test_utils.RawTestServer]:
    class TLSServer(aiohttp.test_utils.RawTestServer):
        async def start_server(self, loop=None, **kwargs):
            await super().start_server(loop=loop, ssl=context, **kwargs)

    return TLSServer


def _server_context(pki, *, client_certificates: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["server_cert"], pki["server_key"])
    if client_certificates:
        # As kube-apiserver --client-ca-file: a client certificate from that CA is required.
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=pki["client_ca"].pem.decode())
    return context


async def _https_cluster(pki, *, client_certificates: bool = False):
    emulator = GuardedCluster()
    server = kmock.Server(
        emulator,
        server_cls=_tls_server(_server_context(pki, client_certificates=client_certificates)),
    )
    await emulator.__aenter__()
    await server.__aenter__()
    serve_operator_resources(emulator)
    return emulator, server


@pytest.fixture
async def https_cluster(pki):
    emulator, server = await _https_cluster(pki)
    try:
        yield emulator, str(server.url).rstrip("/")
    finally:
        await server.__aexit__(None, None, None)
        await emulator.__aexit__(None, None, None)


@pytest.fixture
async def mtls_cluster(pki):
    emulator, server = await _https_cluster(pki, client_certificates=True)
    try:
        yield emulator, str(server.url).rstrip("/")
    finally:
        await server.__aexit__(None, None, None)
        await emulator.__aexit__(None, None, None)


def _kubeconfig(tmp_path, monkeypatch, url: str, ca: bytes, user: dict) -> None:
    """A kubeconfig as a cluster admin hands out, for kopf's login_with_kubeconfig."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "tls",
                        "cluster": {"server": url, "certificate-authority-data": _b64(ca)},
                    }
                ],
                "users": [{"name": "operator", "user": user}],
                "contexts": [
                    {
                        "name": "tls",
                        "context": {"cluster": "tls", "user": "operator", "namespace": "courtside"},
                    }
                ],
                "current-context": "tls",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(path))


@pytest.fixture
def logged_in_by_kubeconfig(settings, monkeypatch):
    """The operator's settings without OPERATOR_KUBE_URL: kopf's login reads KUBECONFIG."""
    from courtside_operator import handlers

    monkeypatch.setattr(
        handlers, "_settings", settings.model_copy(update={"operator_kube_url": None})
    )


def _client(ca_pem: bytes, cert: tuple[bytes, bytes] | None = None) -> httpx.AsyncClient:
    context = ssl.create_default_context(cadata=ca_pem.decode())
    if cert is not None:
        with tempfile.NamedTemporaryFile() as crt, tempfile.NamedTemporaryFile() as key:
            crt.write(cert[0])
            key.write(cert[1])
            crt.flush()
            key.flush()
            context.load_cert_chain(crt.name, key.name)
    return httpx.AsyncClient(verify=context, headers={"Authorization": f"Bearer {TOKEN}"})


async def _ready_condition(k8s: httpx.AsyncClient, url: str, slug: str) -> dict:
    obj = (await k8s.get(f"{url}{TENANTS}/{slug}")).json()
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}


# --- the tests ------------------------------------------------------------------------------


async def test_secrets_are_written_over_tls_with_the_clusters_ca_and_token(
    https_cluster, pki, tmp_path, monkeypatch, logged_in_by_kubeconfig
):
    emulator, url = https_cluster
    emulator.token = TOKEN
    _kubeconfig(tmp_path, monkeypatch, url, pki["cluster_ca"].pem, {"token": TOKEN})
    slug = f"tls-{uuid.uuid4().hex[:8]}"
    async with _client(pki["cluster_ca"].pem) as k8s, running_operator():
        created = await k8s.post(f"{url}{TENANTS}", json=manifest(slug))
        assert created.status_code in (200, 201), created.text

        async def ready():
            conditions = await _ready_condition(k8s, url, slug)
            return conditions if conditions.get("Ready", {}).get("status") == "True" else None

        await _until(ready)
        secret = (await k8s.get(f"{url}{SECRETS}/tenant-{slug}-db")).json()
        assert base64.b64decode(secret["data"]["username"]).decode() == "tenant_" + slug.replace(
            "-", "_"
        )
    secret_calls = [call for call in emulator.calls if call[1].startswith(SECRETS)]
    assert {method for method, _, _ in secret_calls} >= {"GET", "POST"}
    # Every Secret call presented the operator's token (none was refused with 401).
    assert {auth for _, _, auth in secret_calls} == {f"Bearer {TOKEN}"}


async def test_secrets_are_written_with_a_client_certificate(
    mtls_cluster, pki, tmp_path, monkeypatch, logged_in_by_kubeconfig
):
    """The server takes no connection without a client certificate from its client CA;
    the kubeconfig's certificate and key reach the Secret store too."""
    emulator, url = mtls_cluster
    cert, key = pki["client"]
    _kubeconfig(
        tmp_path,
        monkeypatch,
        url,
        pki["cluster_ca"].pem,
        {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)},
    )
    slug = f"mtls-{uuid.uuid4().hex[:8]}"
    async with _client(pki["cluster_ca"].pem, (cert, key)) as k8s, running_operator():
        created = await k8s.post(f"{url}{TENANTS}", json=manifest(slug))
        assert created.status_code in (200, 201), created.text

        async def ready():
            conditions = await _ready_condition(k8s, url, slug)
            return conditions if conditions.get("Ready", {}).get("status") == "True" else None

        await _until(ready)
        secret = await k8s.get(f"{url}{SECRETS}/tenant-{slug}-db")
        assert secret.status_code == 200
    assert any(call[1].startswith(SECRETS) and call[0] == "POST" for call in emulator.calls)
    # And the control: without that certificate the server does refuse the connection.
    store = KubernetesSecretStore(
        KubernetesApi(_info(url, ca_data=pki["cluster_ca"].pem), per_request=True), "courtside"
    )
    with pytest.raises(KubernetesApiError) as refused:
        await store.get(f"tenant-{slug}-db")
    assert refused.value.status is None


def _info(url: str, **fields):
    import kopf

    return kopf.ConnectionInfo(server=url, **fields)


@pytest.mark.parametrize("ca", ["another-ca", "system-cas"])
async def test_a_certificate_the_ca_does_not_vouch_for_is_a_kubernetes_api_error(
    https_cluster, pki, ca
):
    _, url = https_cluster
    fields = {"ca_data": pki["stranger"].pem} if ca == "another-ca" else {}
    api = KubernetesApi(_info(url, token=TOKEN, **fields))
    try:
        with pytest.raises(KubernetesApiError) as failed:
            await KubernetesSecretStore(api, "courtside").get("tenant-x-db")
    finally:
        await api.close()
    assert failed.value.status is None
    assert "certificate verify failed" in failed.value.message
    assert url in failed.value.message


@pytest.mark.parametrize("ca", ["another-ca", "system-cas"])
async def test_a_tls_failure_becomes_a_kubernetes_api_condition(
    https_cluster, pki, reconciler, settings, monkeypatch, ca
):
    """What the Tenant says when the Secret store cannot verify the API server: a
    Kubernetes API problem, not DatabaseUnreachable (and the handler retries)."""
    import kopf
    from courtside_operator import handlers

    _, url = https_cluster
    monkeypatch.setattr(handlers, "_settings", settings)
    fields = {"ca_data": pki["stranger"].pem} if ca == "another-ca" else {}
    memo = kopf.Memo(reconciler=reconciler)
    handlers._kube(memo).info = _info(url, token=TOKEN, **fields)
    slug = f"badca-{uuid.uuid4().hex[:8]}"
    body = kopf.Body(
        {
            **manifest(slug),
            "metadata": {"name": slug, "uid": str(uuid.uuid4()), "generation": 1},
        }
    )
    patch = kopf.Patch()
    try:
        with pytest.raises(kopf.TemporaryError):
            await handlers._reconcile(
                body, patch, memo, 0, logging.getLogger(__name__), drift_check=False
            )
    finally:
        await handlers._kube(memo).close()
    conditions = {c["type"]: c for c in patch["status"]["conditions"]}
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == (
        "False",
        "KubernetesApiError",
    )
    assert "certificate verify failed" in conditions["Ready"]["message"]
    assert "DatabaseUnreachable" not in {c["reason"] for c in conditions.values()}


async def test_an_api_refusal_is_reported_with_its_status(
    https_cluster, pki, tmp_path, monkeypatch, logged_in_by_kubeconfig
):
    """RBAC says no to Secrets (a wrong secretsNamespace, a missing RoleBinding): the
    Tenant says so, with the API's status and message."""
    emulator, url = https_cluster
    emulator.token = TOKEN
    emulator.forbidden = {"secrets"}
    _kubeconfig(tmp_path, monkeypatch, url, pki["cluster_ca"].pem, {"token": TOKEN})
    slug = f"rbac-{uuid.uuid4().hex[:8]}"
    async with _client(pki["cluster_ca"].pem) as k8s, running_operator():
        created = await k8s.post(f"{url}{TENANTS}", json=manifest(slug))
        assert created.status_code in (200, 201), created.text

        async def refused():
            ready = (await _ready_condition(k8s, url, slug)).get("Ready", {})
            return ready if ready.get("status") == "False" else None

        ready = await _until(refused)
    assert ready["reason"] == "KubernetesApiError"
    assert "HTTP 403" in ready["message"]
    assert "secrets is forbidden" in ready["message"]
