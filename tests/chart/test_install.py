"""What a cluster enforces on `helm install` / `helm upgrade` of the chart: hook ordering,
the cluster's Kubernetes version and API groups, required values, drains (PDB), who may
reach PostgreSQL, the Gateway API route, and the database connection budget in NOTES.

Rendered by the real Helm engine into kmock's emulator (tests/chart/render.py); this file is
also its own driver (run as a script) so that a test can choose the server's version and the
API groups it serves, which decide `.Capabilities` and Chart.yaml's kubeVersion check.
"""

import asyncio
import base64
import copy
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jsonschema  # noqa: E402
import kubernetes_validate  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

CHART = ROOT / "charts" / "courtside"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
HOOK = "courtside.test/hook"  # render.py's name for helm.sh/hook
KEDA_RESOURCES = ("keda.sh/",)
HTTPROUTES = ("gateway.networking.k8s.io/v1/httproutes", "HTTPRoute", True)

DATABASE = "postgresql+asyncpg://{0}:not-{0}-k4Q9@db:5432/courtside"
BASE: dict[str, Any] = {
    "secrets": {
        "generate": True,
        "DATABASE_URL": DATABASE.format("courtside_app"),
        "MIGRATION_DATABASE_URL": DATABASE.format("courtside_owner"),
        "RELAY_DATABASE_URL": DATABASE.format("courtside_relay"),
        "REDIS_URL": "redis://redis:6379/0",
    },
    "config": {
        "sqsNotificationsQueueUrl": "https://sqs.us-east-1.amazonaws.com/1/notifications",
        "sqsMediaQueueUrl": "https://sqs.us-east-1.amazonaws.com/1/media",
    },
}


# --- the driver (runs in its own process: Helm reads HELM_DRIVER=memory at start) ---------


async def _install(values: dict, keda: bool, kube: str, gateway: bool) -> dict:
    import kmock
    from helm_sdkpy import Configuration, Install

    from tests.chart import render
    from tests.k8s_emulator import kubeconfig

    major, minor, _ = kube.split(".")

    class Cluster(render.ChartCluster):
        async def _serve_server_version(self, request: Any) -> dict[str, str]:
            version = await super()._serve_server_version(request)
            return {**version, "major": major, "minor": minor, "gitVersion": f"v{kube}"}

    resources = [r for r in render.RESOURCES if keda or not r[0].startswith(KEDA_RESOURCES)]
    if gateway:
        resources.append(HTTPROUTES)
    chart = render.neutralised_copy(CHART)
    try:
        async with Cluster() as emulator, kmock.Server(emulator) as server:
            for resource, kind, namespaced in resources:
                emulator.serve(resource, kind, namespaced=namespaced)
            config = Configuration(
                namespace=render.NAMESPACE,
                kubeconfig=kubeconfig(str(server.url), render.NAMESPACE),
            )
            release = await Install(config).run(
                "courtside", str(chart), values=values, wait=False, timeout=60
            )
            notes = (release.get("info") or {}).get("notes", "")
            return {"objects": render._stored(emulator), "notes": notes}
    finally:
        import shutil

        shutil.rmtree(chart.parent, ignore_errors=True)


def install(
    values: dict, *, keda: bool = True, kube: str = "1.31.0", gateway: bool = False
) -> subprocess.CompletedProcess[str]:
    request = {"values": values, "keda": keda, "kube": kube, "gateway": gateway}
    return subprocess.run(
        [sys.executable, __file__, json.dumps(request)],
        env={**os.environ, "HELM_DRIVER": "memory"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@cache
def _installed(request: str) -> dict:
    options = json.loads(request)
    result = install(options.pop("values"), **options)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def installed(values: dict, **options: Any) -> dict:
    return _installed(json.dumps({"values": values, **options}, sort_keys=True))


def merged(*layers: dict) -> dict:
    out: dict = {}
    for layer in layers:
        out = _merge(out, layer)
    return out


def _merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def values_file(name: str) -> dict:
    return yaml.safe_load((CHART / name).read_text())


def default_values() -> dict:
    return values_file("values.yaml")


VARIANTS = {
    "default": BASE,
    "dev": values_file("values-dev.yaml"),
    "production": values_file("values-production.yaml"),
}


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict], kind: str, suffix: str) -> dict:
    [obj] = [o for o in by_kind(objects, kind) if o["metadata"]["name"].endswith(suffix)]
    return obj


def pod_specs(objects: list[dict]):
    for obj in objects:
        if obj["kind"] in {"Deployment", "Job"}:
            yield obj, obj["spec"]["template"]
        elif obj["kind"] == "ScaledJob":
            yield obj, obj["spec"]["jobTargetRef"]["template"]


# --- 9. hooks: what Helm does on install and upgrade ---------------------------------------

# Helm's InstallOrder (pkg/release/v1/util/kind_sorter.go): hooks are pre-sorted by kind,
# then sort.Stable by weight, then name (pkg/action/hooks.go, hookByWeight).
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
    "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
    "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
    "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
    "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
    "APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]  # fmt: skip


def _key(obj: dict) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _annotation(obj: dict, name: str) -> str:
    return (obj["metadata"].get("annotations") or {}).get(f"courtside.test/{name}", "")


def hooks_of(objects: list[dict], event: str) -> list[dict]:
    hooks = [o for o in objects if event in _annotation(o, "hook").split(",")]
    order = {kind: i for i, kind in enumerate(INSTALL_ORDER)}
    hooks.sort(key=lambda o: order.get(o["kind"], len(order)))
    hooks.sort(key=lambda o: (int(_annotation(o, "hook-weight") or 0), o["metadata"]["name"]))
    return hooks


def _policies(hook: dict) -> set[str]:
    return set(filter(None, _annotation(hook, "hook-delete-policy").split(","))) or {
        "before-hook-creation"
    }


def _references(template: dict) -> set[tuple[str, str]]:
    """The ServiceAccount, Secrets and ConfigMaps a pod needs to start."""
    spec = template["spec"]
    needed = {("ServiceAccount", spec.get("serviceAccountName") or "default")}
    for container in spec.get("initContainers", []) + spec["containers"]:
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                needed.add(("Secret", source["secretRef"]["name"]))
            if "configMapRef" in source:
                needed.add(("ConfigMap", source["configMapRef"]["name"]))
        for env in container.get("env", []):
            ref = env.get("valueFrom", {})
            if "secretKeyRef" in ref:
                needed.add(("Secret", ref["secretKeyRef"]["name"]))
            if "configMapKeyRef" in ref:
                needed.add(("ConfigMap", ref["configMapKeyRef"]["name"]))
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            needed.add(("Secret", volume["secret"]["secretName"]))
        if "configMap" in volume:
            needed.add(("ConfigMap", volume["configMap"]["name"]))
    return needed


def run_hooks(
    objects: list[dict], event: str, existing: set, *, fail: str | None = None
) -> tuple[list[str], set]:
    """Helm's execHook for one event, on a cluster holding `existing`: the problems a pod
    would meet (a reference that isn't there when its Job starts) and what is left after
    it. With `fail`, that hook (a Job's name) fails instead of completing."""
    present = set(existing)
    problems = []
    hooks = hooks_of(objects, event)
    for i, hook in enumerate(hooks):
        if "before-hook-creation" in _policies(hook):
            present.discard(_key(hook))
        present.add(_key(hook))
        if hook["kind"] == "Job":
            for ref in sorted(_references(hook["spec"]["template"]) - present):
                problems.append(f"{event}: Job/{hook['metadata']['name']} starts without {ref}")
            if hook["metadata"]["name"] == fail:
                if "hook-failed" in _policies(hook):
                    present.discard(_key(hook))
                # Helm v4 then deletes the earlier hooks whose policy is hook-succeeded.
                for earlier in hooks[:i]:
                    if "hook-succeeded" in _policies(earlier):
                        present.discard(_key(earlier))
                return problems, present
    for hook in reversed(hooks):
        if "hook-succeeded" in _policies(hook):
            present.discard(_key(hook))
    return problems, present


def release_objects(objects: list[dict]) -> set:
    return {_key(o) for o in objects if not _annotation(o, "hook")}


def outside(values: dict) -> set:
    """What the operator of the cluster provides: an existing Secret, the default account."""
    given = {("ServiceAccount", "default")}
    if values.get("existingSecret"):
        given.add(("Secret", values["existingSecret"]))
    return given


@pytest.mark.parametrize("variant", ["default", "production"])
def test_every_hook_pod_finds_its_account_and_secrets_on_install_and_upgrade(variant):
    values = VARIANTS[variant]
    objects = installed(values)["objects"]
    assert hooks_of(objects, "pre-install"), "the migrations run as hooks here"
    hook_keys = {_key(o) for o in objects if _annotation(o, "hook")}

    # First install: only what the cluster already had.
    problems, left = run_hooks(objects, "pre-install", outside(values))
    assert problems == []
    assert left & hook_keys == set(), "hook objects outlive the hook run"

    # Upgrade: the previous release's objects exist too (the earlier hooks were deleted).
    problems, left = run_hooks(objects, "pre-upgrade", outside(values) | release_objects(objects))
    assert problems == []
    assert left & hook_keys == set()


def test_a_failed_migration_leaves_only_its_job_and_that_expires():
    objects = installed(BASE)["objects"]
    job = named(objects, "Job", "-migrate")
    problems, left = run_hooks(objects, "pre-install", set(), fail=job["metadata"]["name"])
    assert problems == []
    # The Secret with the owner role's URL and the hook ServiceAccount are gone with it.
    assert left == {_key(job)}
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert _annotation(job, "hook-output-log-policy") == "hook-failed"


def test_the_hook_simulation_catches_a_service_account_created_too_late():
    """The control: the migrations' account as a plain release object (helm/helm#7447)."""
    objects = copy.deepcopy(installed(BASE)["objects"])
    account = named(objects, "ServiceAccount", "-migrate")
    for name in ("hook", "hook-weight", "hook-delete-policy"):
        del account["metadata"]["annotations"][f"courtside.test/{name}"]
    problems, _ = run_hooks(objects, "pre-install", set())
    assert problems == [
        f"pre-install: Job/courtside-migrate starts without ('ServiceAccount', "
        f"'{account['metadata']['name']}')"
    ]


# --- 9. imagePullSecrets, KEDA capability, required values, kubeVersion --------------------

EVERY_POD = merged(
    BASE,
    {
        "devDependencies": {"enabled": True},
        "keda": {"media": {"mode": "scaledJob"}},
        "migrations": {"mode": "hook"},
    },
)


def test_every_pod_pulls_with_the_given_secrets():
    pull = [{"name": "regcred"}, {"name": "mirror"}]
    objects = installed(merged(EVERY_POD, {"imagePullSecrets": pull}))["objects"]
    components = set()
    for obj, template in pod_specs(objects):
        assert template["spec"].get("imagePullSecrets") == pull, obj["metadata"]["name"]
        components.add(template["metadata"]["labels"]["app.kubernetes.io/component"])
    assert components >= {
        "api", "migrate", "operator", "worker-outbox-relay", "worker-notifications",
        "worker-media", "worker-scheduler", "postgres", "redis", "moto", "mail", "aws-init",
    }  # fmt: skip
    assert any(o["kind"] == "ScaledJob" for o, _ in pod_specs(objects))

    for obj, template in pod_specs(installed(EVERY_POD)["objects"]):
        assert "imagePullSecrets" not in template["spec"], obj["metadata"]["name"]


KEDA_KINDS = {"ScaledObject", "ScaledJob", "TriggerAuthentication"}


def test_keda_objects_only_where_the_cluster_serves_keda():
    with_keda = installed(BASE)
    assert {o["kind"] for o in with_keda["objects"]} >= {"ScaledObject", "TriggerAuthentication"}
    notifications = named(with_keda["objects"], "Deployment", "-notifications")
    assert "replicas" not in notifications["spec"]  # KEDA owns the count

    without = installed(BASE, keda=False)
    assert not KEDA_KINDS & {o["kind"] for o in without["objects"]}
    for name in ("-notifications", "-media"):
        deployment = named(without["objects"], "Deployment", name)
        assert deployment["spec"]["replicas"] == 1  # the fixed count, not zero
    assert "serves no keda.sh/v1alpha1 API" in without["notes"]
    assert "serves no keda.sh" not in with_keda["notes"]


def test_skip_capability_check_renders_keda_objects_anyway():
    """Forced without the API, the objects are rendered: the cluster then refuses them."""
    result = install(merged(BASE, {"keda": {"skipCapabilityCheck": True}}), keda=False)
    assert result.returncode != 0
    assert 'no matches for kind "ScaledObject"' in result.stderr or (
        'no matches for kind "TriggerAuthentication"' in result.stderr
    )


def _without(values: dict, path: str) -> dict:
    out = copy.deepcopy(values)
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = ""
    return out


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("secrets.DATABASE_URL", "secrets.DATABASE_URL is required"),
        ("secrets.REDIS_URL", "secrets.REDIS_URL is required"),
        ("secrets.MIGRATION_DATABASE_URL", "secrets.MIGRATION_DATABASE_URL is required"),
        ("secrets.RELAY_DATABASE_URL", "secrets.RELAY_DATABASE_URL is required"),
        ("config.sqsNotificationsQueueUrl", "config.sqsNotificationsQueueUrl is required"),
        ("config.sqsMediaQueueUrl", "config.sqsMediaQueueUrl is required"),
        ("image.repository", "/image/repository"),  # the values schema
    ],
)
def test_a_missing_required_value_fails_the_render_naming_it(missing, message):
    result = install(_without(BASE, missing))
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]


def test_required_values_follow_what_is_enabled():
    # An existing Secret holds the URLs; without the workers that use them, no queues.
    values = {
        "existingSecret": "courtside-prod",
        "workers": {
            name: {"enabled": False}
            for name in ("outboxRelay", "notifications", "media", "scheduler")
        },
    }
    assert install(values).returncode == 0
    # The relay alone publishes to both queues.
    relay = merged(values, {"workers": {"outboxRelay": {"enabled": True}}})
    assert "config.sqsNotificationsQueueUrl is required" in install(relay).stderr


def test_the_chart_needs_kubernetes_1_30_for_the_prestop_sleep_action():
    old = install(BASE, kube="1.29.4")
    assert old.returncode != 0
    assert "incompatible with Kubernetes v1.29.4" in old.stderr
    objects = installed(BASE, kube="1.30.0")["objects"]
    api = named(objects, "Deployment", "-api")
    [container] = api["spec"]["template"]["spec"]["containers"]
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    api = copy.deepcopy(api)
    api["metadata"].pop("managedFields", None)
    kubernetes_validate.validate(api, "1.30.0", strict=True)


# --- 10. the connection budget -------------------------------------------------------------


def expected_budget(values: dict, keda: bool = True) -> dict[str, int]:
    v = merged(default_values(), values)
    db, api = v["database"], v["api"]
    per_api = db["api"]["poolSize"] + db["api"]["maxOverflow"] + db["api"]["readPoolSize"]
    api_pods = (
        api["autoscaling"]["maxReplicas"]
        if api["autoscaling"]["enabled"]
        else (api["replicaCount"])
    )
    lines = {"api": api_pods * per_api}
    per_worker = db["workers"]["poolSize"] + db["workers"]["maxOverflow"]
    for name in ("notifications", "media"):
        worker = v["workers"][name]
        if worker["enabled"]:
            pods = (
                v["keda"][name]["maxReplicaCount"]
                if keda and v["keda"]["enabled"]
                else (worker["replicaCount"])
            )
            lines[f"worker {name}"] = pods * per_worker
    fixed = {"outboxRelay": ("worker outbox-relay", 5), "scheduler": ("worker scheduler", 2)}
    for key, (name, each) in fixed.items():
        if v["workers"][key]["enabled"]:
            lines[name] = v["workers"][key]["replicaCount"] * each
    if v["operator"]["enabled"]:
        lines["operator"] = v["operator"]["replicaCount"] * db["operator"]["maxConnections"]
    if v["migrations"]["enabled"]:
        lines["migrations"] = 1
    return lines


def printed_budget(notes: str) -> dict[str, int]:
    lines = notes.split("PostgreSQL connections, worst case")[1].splitlines()[1:]
    out = {}
    for line in lines:
        if not line.startswith("  "):
            break
        name, _, rest = line.strip().partition("  ")
        out[name.strip()] = int(rest.split("=")[-1])
    return out


@pytest.mark.parametrize(
    "values",
    [
        BASE,
        VARIANTS["production"],
        merged(
            BASE,
            {
                "database": {"api": {"poolSize": 5, "maxOverflow": 1, "readPoolSize": 4}},
                "api": {"autoscaling": {"maxReplicas": 7}},
                "workers": {"media": {"enabled": False}},
            },
        ),
    ],
    ids=["default", "production", "small-pools"],
)
def test_notes_print_the_worst_case_connection_count_from_the_values(values):
    notes = installed(values)["notes"]
    expected = expected_budget(values)
    printed = printed_budget(notes)
    total = printed.pop("total")
    assert printed == expected
    assert total == sum(expected.values())
    print(f"worst-case connections: {total}")
    assert "PgBouncer" in notes and "docs/kubernetes.md" in notes


def test_production_notes_show_the_2460_connections_of_the_api_at_its_maximum():
    printed = printed_budget(installed(VARIANTS["production"])["notes"])
    assert printed["api"] == 30 * (40 + 10 + 32) == 2460


def pod_environment(objects: list[dict], template: dict) -> dict[str, str]:
    """A container's literal environment as the kubelet builds it: envFrom sources in
    order, then env, which wins."""
    [container] = template["spec"]["containers"]
    sources = {("configMapRef", o["metadata"]["name"]): o.get("data", {}) for o in objects
               if o["kind"] == "ConfigMap"}  # fmt: skip
    for secret in by_kind(objects, "Secret"):
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        sources["secretRef", secret["metadata"]["name"]] = data
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        [(kind, ref)] = source.items()
        environment.update(sources[kind, ref["name"]])
    for env in container.get("env", []):
        if "value" in env:
            environment[env["name"]] = env["value"]
    return environment


def test_pool_sizes_reach_the_processes(monkeypatch):
    from app.infra.settings import Settings

    values = merged(
        BASE,
        {"database": {"api": {"poolSize": 7, "maxOverflow": 3, "readPoolSize": 5},
                      "workers": {"poolSize": 4, "maxOverflow": 2},
                      "operator": {"maxConnections": 6}}},
    )  # fmt: skip
    objects = installed(values)["objects"]

    def settings_of(suffix: str) -> Settings:
        template = named(objects, "Deployment", suffix)["spec"]["template"]
        with monkeypatch.context() as patch:
            for name, value in pod_environment(objects, template).items():
                patch.setenv(name, value)
            return Settings(_env_file=None)

    api = settings_of("-api")
    assert (api.db_pool_size, api.db_max_overflow, api.db_read_pool_size) == (7, 3, 5)
    for worker in ("-notifications", "-media"):
        settings = settings_of(worker)
        assert (settings.db_pool_size, settings.db_max_overflow) == (4, 2), worker
    assert settings_of("-operator").operator_db_max_connections == 6


def test_media_settings_reach_the_api(monkeypatch):
    from app.infra.settings import Settings

    values = merged(
        BASE,
        {"config": {"s3PublicEndpointUrl": "https://s3.example.com",
                    "media": {"uploadExpiryHours": 6, "uploadUrlTtlSeconds": 600,
                              "playbackUrlTtlSeconds": 120,
                              "allowedTypes": ["video/mp4", "image/png"]}}},
    )  # fmt: skip
    objects = installed(values)["objects"]
    template = named(objects, "Deployment", "-api")["spec"]["template"]
    with monkeypatch.context() as patch:
        for name, value in pod_environment(objects, template).items():
            patch.setenv(name, value)
        settings = Settings(_env_file=None)
    assert settings.s3_public_endpoint_url == "https://s3.example.com"
    assert settings.media_upload_expiry_hours == 6
    assert settings.media_upload_url_ttl_seconds == 600
    assert settings.media_playback_url_ttl_seconds == 120
    assert settings.media_allowed_types == ["video/mp4", "image/png"]


# --- 11. PDB, NetworkPolicy to PostgreSQL, Ingress / HTTPRoute ------------------------------


@pytest.mark.parametrize(
    ("api", "expected"),
    [
        ({"autoscaling": {"enabled": False}, "replicaCount": 1}, None),
        ({"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 5}}, None),
        ({"autoscaling": {"enabled": False}, "replicaCount": 3}, 1),
        ({"autoscaling": {"enabled": True, "minReplicas": 3}, "pdb": {"minAvailable": 2}}, 2),
        ({"autoscaling": {"minReplicas": 4}, "pdb": {"minAvailable": "50%"}}, "50%"),
        ({"replicaCount": 3, "pdb": {"enabled": False}}, None),
    ],
)  # fmt: skip
def test_the_pdb_never_blocks_a_drain(api, expected):
    objects = installed(merged(BASE, {"api": api}))["objects"]
    pdbs = by_kind(objects, "PodDisruptionBudget")
    if expected is None:
        assert pdbs == []
    else:
        [pdb] = pdbs
        assert pdb["spec"]["minAvailable"] == expected


def test_a_pdb_that_would_block_every_drain_fails_the_render():
    result = install(
        merged(BASE, {"api": {"autoscaling": {"minReplicas": 2}, "pdb": {"minAvailable": 2}}})
    )
    assert result.returncode != 0
    assert "api.pdb.minAvailable (2) must be below the API's fewest replicas (2)" in result.stderr


def test_dev_values_render_no_pdb():
    assert by_kind(installed(VARIANTS["dev"])["objects"], "PodDisruptionBudget") == []


def selects(selector: dict, labels: dict) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        present = expression["key"] in labels
        value = labels.get(expression["key"])
        operator = expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and present and value in expression["values"]:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def admitted(policy: dict, labels: dict, port: str, namespace_labels: dict) -> bool:
    """Whether a NetworkPolicy's ingress rules admit a pod (same namespace unless a rule's
    namespaceSelector says otherwise) to the named `port`."""
    for rule in policy["spec"].get("ingress", []):
        ports = rule.get("ports")
        if ports and not any(p["port"] == port for p in ports):
            continue
        for peer in rule.get("from", []):
            if "ipBlock" in peer:
                continue
            if "namespaceSelector" in peer and not selects(
                peer["namespaceSelector"], namespace_labels
            ):
                continue
            if (
                "namespaceSelector" not in peer
                and namespace_labels.get("kubernetes.io/metadata.name") != "courtside"
            ):
                continue
            if selects(peer.get("podSelector", {}), labels):
                return True
    return False


def test_postgres_takes_connections_from_the_apps_pods_only():
    values = merged(VARIANTS["dev"], {"migrations": {"mode": "hook"}})
    objects = installed(values)["objects"]
    policy = named(objects, "NetworkPolicy", "-postgres")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    pods = {
        template["metadata"]["labels"]["app.kubernetes.io/component"]: template["metadata"][
            "labels"
        ]
        for _, template in pod_specs(objects)
    }
    assert selects(policy["spec"]["podSelector"], pods["postgres"])
    assert not any(
        selects(policy["spec"]["podSelector"], labels)
        for component, labels in pods.items()
        if component != "postgres"
    )
    home = {"kubernetes.io/metadata.name": "courtside"}
    app = {"api", "migrate", "operator"} | {c for c in pods if c.startswith("worker-")}
    assert app <= set(pods), set(pods)
    for component, labels in pods.items():
        assert admitted(policy, labels, "main", home) == (component in app), component
    # Nobody from another namespace, nor another release's API in this one.
    assert not admitted(policy, pods["api"], "main", {"kubernetes.io/metadata.name": "other"})
    stranger = {**pods["api"], "app.kubernetes.io/instance": "someone-else"}
    assert not admitted(policy, stranger, "main", home)


def test_the_api_takes_traffic_from_the_ingress_controller_only():
    policy = named(installed(BASE)["objects"], "NetworkPolicy", "-api")
    controller = {"app.kubernetes.io/name": "ingress-nginx"}
    assert admitted(policy, controller, "http", {"kubernetes.io/metadata.name": "ingress-nginx"})
    home = {"kubernetes.io/metadata.name": "courtside"}
    assert not admitted(policy, controller, "http", home)  # a look-alike in another namespace
    assert not admitted(policy, {"app.kubernetes.io/name": "x"}, "http", home)


@cache
def httproute_schema() -> dict:
    crd = yaml.safe_load(
        (SCHEMAS / "gateway-api" / "gateway.networking.k8s.io_httproutes.yaml").read_text()
    )
    [v1] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return v1["schema"]["openAPIV3Schema"]


GATEWAY = {
    "enabled": True,
    "parentRefs": [{"name": "public", "namespace": "gateway-system", "sectionName": "https"}],
    "hostnames": ["api.courtside.example"],
}


def _clean(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    obj["metadata"].pop("managedFields", None)
    obj.pop("status", None)
    return obj


def test_an_httproute_instead_of_the_ingress():
    values = merged(BASE, {"api": {"gateway": GATEWAY, "ingress": {"enabled": False}}})
    result = installed(values, gateway=True)
    objects = result["objects"]
    assert by_kind(objects, "Ingress") == []
    route = named(objects, "HTTPRoute", "-api")
    jsonschema.validate(_clean(route), httproute_schema())
    service = named(objects, "Service", "-api")
    [rule] = route["spec"]["rules"]
    assert rule["backendRefs"] == [
        {"name": service["metadata"]["name"], "port": service["spec"]["ports"][0]["port"]}
    ]
    assert route["spec"]["parentRefs"] == GATEWAY["parentRefs"]
    assert route["spec"]["hostnames"] == GATEWAY["hostnames"]
    assert "API (Gateway): https://api.courtside.example" in result["notes"]


def test_an_httproute_beside_the_ingress_and_an_ingress_with_the_default_class():
    values = merged(BASE, {"api": {"gateway": GATEWAY, "ingress": {"className": ""}}})
    objects = installed(values, gateway=True)["objects"]
    assert len(by_kind(objects, "HTTPRoute")) == 1
    [ingress] = by_kind(objects, "Ingress")
    assert "ingressClassName" not in ingress["spec"]  # the cluster's default class


def test_the_httproute_schema_rejects_a_broken_route():
    """The control for the schema check above."""
    values = merged(BASE, {"api": {"gateway": GATEWAY}})
    route = _clean(named(installed(values, gateway=True)["objects"], "HTTPRoute", "-api"))
    route["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Glob"
    with pytest.raises(jsonschema.ValidationError, match="Glob"):
        jsonschema.validate(route, httproute_schema())


def test_a_gateway_without_parent_refs_fails_the_render():
    result = install(merged(BASE, {"api": {"gateway": {"enabled": True}}}), gateway=True)
    assert result.returncode != 0
    assert "api.gateway.parentRefs is required" in result.stderr


if __name__ == "__main__":
    assert os.environ.get("HELM_DRIVER") == "memory", "run with HELM_DRIVER=memory"
    request = json.loads(sys.argv[1])
    json.dump(asyncio.run(_install(**request)), sys.stdout, default=str)
