"""The Helm chart, rendered by the real Helm engine and checked against upstream schemas."""

import base64
import copy
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "courtside"
# Upstream schemas, vendored beside this test (source and version: schemas/README.md).
SCHEMAS = Path(__file__).resolve().parent / "schemas"
K8S_VERSION = "1.31.0"
WORKLOAD_KINDS = {"Deployment", "Job"}
KEDA_CRDS = {
    "ScaledObject": "keda.sh_scaledobjects.yaml",
    "ScaledJob": "keda.sh_scaledjobs.yaml",
    "TriggerAuthentication": "keda.sh_triggerauthentications.yaml",
}


def run_render(*releases: dict) -> subprocess.CompletedProcess[str]:
    """Install with the first values (and upgrade with each next one, see render.py)."""
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "chart" / "render.py"),
            str(CHART),
            *map(json.dumps, releases),
        ],
        env={**os.environ, "HELM_DRIVER": "memory"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def values_file(name: str) -> dict:
    return yaml.safe_load((CHART / name).read_text()) if name else {}


# The chart's defaults plus what it insists on: where the JWT secrets come from, the
# database and Redis URLs and the queues (tests/chart/test_install.py: required values).
DEFAULT_INSTALL = {
    "secrets": {
        "generate": True,
        "DATABASE_URL": "postgresql+asyncpg://courtside_app:app@db:5432/courtside",
        "MIGRATION_DATABASE_URL": "postgresql+asyncpg://courtside_owner:owner@db:5432/courtside",
        "RELAY_DATABASE_URL": "postgresql+asyncpg://courtside_relay:relay@db:5432/courtside",
        "REDIS_URL": "redis://redis:6379/0",
    },
    "config": {
        "sqsNotificationsQueueUrl": "https://sqs.us-east-1.amazonaws.com/1/notifications",
        "sqsMediaQueueUrl": "https://sqs.us-east-1.amazonaws.com/1/media",
    },
}


@cache
def rendered(variant: str) -> list[dict]:
    result = run_render(values_file(variant) if variant else DEFAULT_INSTALL)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


VARIANTS = ["", "values-dev.yaml", "values-production.yaml"]


@pytest.fixture(params=VARIANTS, ids=["default", "dev", "production"])
def objects(request) -> list[dict]:
    return rendered(request.param)


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def _clean(obj: dict) -> dict:
    """The object as the chart wrote it, without what the emulator stored around it."""
    obj = copy.deepcopy(obj)
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


def test_every_builtin_object_is_valid_for_kubernetes(objects):
    checked = 0
    for obj in objects:
        # Custom resources: checked against their CRDs (KEDA's here, kopf's peering in
        # test_operator_chart.py).
        if obj["kind"] in KEDA_CRDS or obj["kind"] == "ClusterKopfPeering":
            continue
        try:
            kubernetes_validate.validate(_clean(obj), K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{obj['kind']}/{obj['metadata']['name']}: {exc}") from exc
        checked += 1
    assert checked >= 15


@cache
def keda_schema(kind: str) -> dict:
    crd = yaml.safe_load((SCHEMAS / "keda" / KEDA_CRDS[kind]).read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_keda_objects_are_valid_for_the_keda_crds(objects):
    for obj in objects:
        if obj["kind"] in KEDA_CRDS:
            jsonschema.validate(_clean(obj), keda_schema(obj["kind"]))


def test_an_invalid_keda_object_is_caught_by_the_schema():
    """The control for the check above: the KEDA schema does reject a broken object."""
    scaled = next(o for o in rendered("") if o["kind"] == "ScaledObject")
    broken = _clean(scaled)
    del broken["spec"]["scaleTargetRef"]
    with pytest.raises(jsonschema.ValidationError, match="scaleTargetRef"):
        jsonschema.validate(broken, keda_schema("ScaledObject"))


def pod_specs(objects):
    for obj in objects:
        if obj["kind"] in WORKLOAD_KINDS:
            yield obj, obj["spec"]["template"]["spec"]
        elif obj["kind"] == "ScaledJob":
            yield obj, obj["spec"]["jobTargetRef"]["template"]["spec"]


def test_every_workload_runs_locked_down(objects):
    seen = 0
    for obj, pod in pod_specs(objects):
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod.get("initContainers", []) + pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["runAsNonRoot"] is True, name
            assert "ALL" in security["capabilities"]["drop"], name
            assert container["resources"]["requests"] and container["resources"]["limits"], name
        seen += 1
    assert seen >= 4


def test_long_running_containers_have_probes(objects):
    for obj in by_kind(objects, "Deployment"):
        for container in obj["spec"]["template"]["spec"]["containers"]:
            assert "livenessProbe" in container, obj["metadata"]["name"]
            if obj["metadata"]["labels"]["app.kubernetes.io/component"] != "operator":
                assert "readinessProbe" in container, obj["metadata"]["name"]


def test_every_object_carries_the_standard_labels(objects):
    for obj in objects:
        if obj["kind"] == "CustomResourceDefinition":
            continue
        labels = obj["metadata"].get("labels", {})
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/version",
        ):
            assert key in labels, (obj["kind"], obj["metadata"]["name"], key)


def test_default_install_has_every_component():
    objects = rendered("")
    deployments = {
        o["metadata"]["labels"]["app.kubernetes.io/component"]
        for o in by_kind(objects, "Deployment")
    }
    assert deployments == {
        "api",
        "worker-outbox-relay",
        "worker-notifications",
        "worker-media",
        "worker-scheduler",
        "operator",
    }
    for kind in (
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "Secret",
        "ClusterRole",
        "ClusterRoleBinding",
        "TriggerAuthentication",
        "CustomResourceDefinition",
        "NetworkPolicy",
    ):
        assert by_kind(objects, kind), kind
    crds = {c["metadata"]["name"] for c in by_kind(objects, "CustomResourceDefinition")}
    assert crds == {"tenants.courtside.dev", "clusterkopfpeerings.kopf.dev"}


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook():
    job = next(
        o for o in by_kind(rendered(""), "Job") if o["metadata"]["name"].endswith("-migrate")
    )
    assert job["metadata"]["annotations"]["courtside.test/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_keda_scales_media_and_notifications_on_queue_depth():
    objects = rendered("")
    scaled = {o["metadata"]["name"]: o for o in by_kind(objects, "ScaledObject")}
    assert set(scaled) == {"courtside-media", "courtside-notifications"}
    auth_names = {o["metadata"]["name"] for o in by_kind(objects, "TriggerAuthentication")}
    for obj in scaled.values():
        spec = obj["spec"]
        assert spec["minReplicaCount"] == 0 and spec["cooldownPeriod"] > 0
        trigger = spec["triggers"][0]
        assert trigger["type"] == "aws-sqs-queue"
        assert {"queueURL", "queueLength", "activationQueueLength", "awsRegion"} <= set(
            trigger["metadata"]
        )
        assert trigger["authenticationRef"]["name"] in auth_names
        target = spec["scaleTargetRef"]["name"]
        deployment = next(
            d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == target
        )
        assert "replicas" not in deployment["spec"]  # KEDA owns the count
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > 25  # longer than the worker's own drain period


def test_production_runs_media_as_a_scaled_job_with_pod_identity():
    objects = rendered("values-production.yaml")
    jobs = by_kind(objects, "ScaledJob")
    assert [j["metadata"]["name"] for j in jobs] == ["courtside-media"]
    assert not any(
        d["metadata"]["name"] == "courtside-media" for d in by_kind(objects, "Deployment")
    )
    auth = by_kind(objects, "TriggerAuthentication")[0]
    assert auth["spec"]["podIdentity"]["provider"] == "aws"
    # Secrets come from the existing Secret; the chart creates none with credentials.
    assert not [
        s
        for s in by_kind(objects, "Secret")
        if "stringData" in s or "data" in s and "DATABASE_URL" in s.get("data", {})
    ]
    ingress = by_kind(objects, "Ingress")[0]
    assert ingress["spec"]["tls"][0]["secretName"] == "courtside-tls"


def test_dev_values_bring_their_own_backing_services():
    objects = rendered("values-dev.yaml")
    components = {
        o["metadata"]["labels"]["app.kubernetes.io/component"]
        for o in by_kind(objects, "Deployment")
    }
    assert {"postgres", "redis", "moto", "mail", "api"} <= components
    assert not [o for o in objects if o["kind"] in KEDA_CRDS]
    api = next(
        o
        for o in by_kind(objects, "Deployment")
        if o["metadata"]["labels"]["app.kubernetes.io/component"] == "api"
    )
    assert api["spec"]["template"]["spec"]["initContainers"][0]["args"] == ["migrate"]


def test_operator_rbac_is_least_privilege():
    objects = rendered("")
    role = next(
        o for o in by_kind(objects, "ClusterRole") if o["metadata"]["name"].endswith("-operator")
    )
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert "secrets" not in rule["resources"]  # only via the namespaced Role
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert {"tenants", "tenants/status", "tenants/finalizers", "events"} <= resources
    secrets_role = next(
        o for o in by_kind(objects, "Role") if o["metadata"]["name"].endswith("-operator-secrets")
    )
    assert secrets_role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            # By name only (no list/watch), and no update: the operator patches.
            "verbs": ["get", "create", "patch", "delete"],
        }
    ]


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"api": {"replicaCount": "three"}}, "replicaCount"),
        ({"keda": {"enabled": True, "authentication": "magic"}}, "authentication"),
        (
            {
                "securityContext": {
                    "readOnlyRootFilesystem": False,
                    "runAsNonRoot": True,
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                }
            },
            "readOnlyRootFilesystem",
        ),
        ({"config": {"forwardedAllowIps": "*"}}, "forwardedAllowIps"),
        (
            {
                "workers": {
                    "media": {
                        "enabled": True,
                        "command": "media",
                        "replicaCount": 1,
                        "resources": {},
                        "gpu": True,
                    }
                }
            },
            "gpu",
        ),
    ],
)
def test_bad_values_fail_with_a_message_naming_the_field(bad, field):
    result = run_render(bad)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert field in result.stderr


def test_values_files_match_the_schema():
    schema = json.loads((CHART / "values.schema.json").read_text())
    base = values_file("values.yaml")

    def merge(a, b):
        out = copy.deepcopy(a)
        for key, value in b.items():
            out[key] = (
                merge(out[key], value)
                if isinstance(value, dict) and isinstance(out.get(key), dict)
                else value
            )
        return out

    for name in VARIANTS[1:]:
        jsonschema.validate(merge(base, values_file(name)), schema)
    jsonschema.validate(base, schema)


def test_skaffold_config_matches_the_upstream_schema():
    schema = json.loads((SCHEMAS / "skaffold" / "v4beta14.json").read_text())
    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    validator = jsonschema.Draft7Validator(schema)
    assert list(validator.iter_errors(config)) == []
    assert config["apiVersion"] == "skaffold/v4beta14"
    assert [p["name"] for p in config["profiles"]] == ["keda", "production"]
    release = config["manifests"]["helm"]["releases"][0]
    assert release["chartPath"] == "charts/courtside"
    assert (ROOT / release["valuesFiles"][0]).exists()
    broken = copy.deepcopy(config)
    broken["build"]["artifacts"][0]["dockerfile"] = "misplaced"
    assert list(validator.iter_errors(broken)) != []


def test_kind_config_maps_ingress_ports_on_a_labelled_node():
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    node = config["nodes"][0]
    assert {(m["containerPort"], m["hostPort"]) for m in node["extraPortMappings"]} == {
        (80, 80),
        (443, 443),
    }
    assert "ingress-ready=true" in node["kubeadmConfigPatches"][0]


def test_dockerfile_builds_a_slim_non_root_image():
    text = (ROOT / "Dockerfile").read_text()
    stages = text.split("\nFROM ")[1:]
    assert len(stages) == 2 and stages[0].startswith("python:3.12-slim AS builder")
    final = stages[-1]
    assert final.startswith("python:3.12-slim")
    assert "build-essential" not in final and "gcc" not in final
    assert "USER 10001" in final
    assert 'ENTRYPOINT ["courtside"]' in final
    assert (ROOT / ".dockerignore").exists()


def test_an_invalid_deployment_is_caught_by_the_kubernetes_schema():
    """The control for the validation above: a misspelt field does fail it."""
    deployment = _clean(by_kind(rendered(""), "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


# --- Secrets: never a public default ---------------------------------------------------


def release_secret(objects: list[dict]) -> dict[str, str]:
    """The release's own Secret, decoded (the emulator stores data as the API server does)."""
    [secret] = [s for s in by_kind(objects, "Secret") if s["metadata"]["name"].endswith("-secrets")]
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_without_jwt_secrets_the_render_fails_naming_them():
    result = run_render({})
    assert result.returncode != 0
    assert "secrets.JWT_ACCESS_SECRET is required" in result.stderr
    assert "secrets.generate=true" in result.stderr and "existingSecret" in result.stderr


@pytest.mark.parametrize(
    "secret, message",
    [
        ("too-short", "shorter than 32 characters"),
        ("dev-access-secret-change-me-0123456789abcdef", "a public placeholder"),
    ],
)
def test_a_short_or_public_jwt_secret_fails_the_render(secret, message):
    result = run_render({"secrets": {"JWT_ACCESS_SECRET": secret, "JWT_REFRESH_SECRET": "r" * 40}})
    assert result.returncode != 0
    assert f"secrets.JWT_ACCESS_SECRET is {message}" in result.stderr


def test_generated_jwt_secrets_are_random_and_kept_across_upgrades():
    result = run_render(DEFAULT_INSTALL, DEFAULT_INSTALL)
    assert result.returncode == 0, result.stderr[-3000:]
    installed, upgraded = (release_secret(step) for step in json.loads(result.stdout))
    jwt = {"JWT_ACCESS_SECRET", "JWT_REFRESH_SECRET"}
    assert jwt <= set(installed)
    assert all(len(installed[key]) >= 32 for key in jwt)
    assert installed["JWT_ACCESS_SECRET"] != installed["JWT_REFRESH_SECRET"]
    assert upgraded == installed  # read back with `lookup`: tokens survive an upgrade
    # Another release gets its own.
    assert release_secret(rendered(""))["JWT_ACCESS_SECRET"] != installed["JWT_ACCESS_SECRET"]


def test_an_existing_secret_means_the_chart_makes_none():
    objects = json.loads(
        run_render({"existingSecret": "courtside-prod", "config": DEFAULT_INSTALL["config"]}).stdout
    )
    assert by_kind(objects, "Secret") == []
    for obj, pod in pod_specs(objects):
        for container in pod["containers"]:
            env_from = container.get("envFrom", [])
            refs = [e["secretRef"]["name"] for e in env_from if "secretRef" in e]
            assert refs in ([], ["courtside-prod"]), obj["metadata"]["name"]


# --- Who may reach what -------------------------------------------------------------


def component(objects: list[dict], kind: str, name: str) -> dict:
    return next(
        o
        for o in by_kind(objects, kind)
        if o["metadata"]["labels"].get("app.kubernetes.io/component") == name
    )


def selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    return all(
        labels.get(e["key"]) in e["values"]
        for e in selector.get("matchExpressions", [])
        if e["operator"] == "In"
    )


INGRESS_NGINX = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}},
}
PROMETHEUS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}


def test_only_the_ingress_controller_reaches_the_api_and_only_prometheus_its_metrics(objects):
    policy = component(objects, "NetworkPolicy", "api")
    kubernetes_validate.validate(_clean(policy), K8S_VERSION, strict=True)
    api = component(objects, "Deployment", "api")
    assert selects(policy["spec"]["podSelector"], api["spec"]["template"]["metadata"]["labels"])
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules = {rule["ports"][0]["port"]: rule["from"] for rule in policy["spec"]["ingress"]}
    assert rules == {"http": [INGRESS_NGINX], "metrics": [PROMETHEUS]}
    # Those are the API container's ports; nothing else listens.
    [container] = api["spec"]["template"]["spec"]["containers"]
    assert {p["name"] for p in container["ports"]} == {"http", "metrics"}


def test_workers_and_the_operator_take_only_prometheus_scrapes(objects):
    [policy] = [
        o for o in by_kind(objects, "NetworkPolicy") if o["metadata"]["name"].endswith("-workers")
    ]
    workers = [
        d
        for d in by_kind(objects, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"].startswith("worker-")
        or d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    ]
    assert len(workers) > 1 and any(w["metadata"]["name"].endswith("-operator") for w in workers)
    for worker in workers:
        labels = worker["spec"]["template"]["metadata"]["labels"]
        assert selects(policy["spec"]["podSelector"], labels), worker["metadata"]["name"]
    assert not selects(
        policy["spec"]["podSelector"],
        component(objects, "Deployment", "api")["spec"]["template"]["metadata"]["labels"],
    )
    assert policy["spec"]["ingress"] == [
        {"from": [PROMETHEUS], "ports": [{"port": "metrics", "protocol": "TCP"}]}
    ]


def test_metrics_are_off_the_public_path(objects):
    api = component(objects, "Deployment", "api")
    annotations = api["spec"]["template"]["metadata"]["annotations"]
    [container] = api["spec"]["template"]["spec"]["containers"]
    metrics_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "metrics")
    assert annotations["prometheus.io/port"] == str(metrics_port)
    service = component(objects, "Service", "api")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    for ingress in by_kind(objects, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["port"] == {"name": "http"}


def test_client_addresses_are_believed_only_from_listed_proxies():
    assert values_file("values.yaml")["config"]["forwardedAllowIps"] == ""
    [config] = by_kind(rendered(""), "ConfigMap")
    assert config["data"]["FORWARDED_ALLOW_IPS"] == ""
    for variant in VARIANTS[1:]:
        trusted = values_file(variant)["config"]["forwardedAllowIps"]
        assert trusted and "*" not in trusted, variant


# --- Cloud identity: one ServiceAccount (and IAM role) per component ----------------

IRSA_ROLE = "eks.amazonaws.com/role-arn"
# The pods of each component (their component label) and the ServiceAccount they run as.
ACCOUNT_OF_COMPONENT = {
    "api": "courtside-api",
    "worker-outbox-relay": "courtside-outbox-relay",
    "worker-notifications": "courtside-notifications",
    "worker-media": "courtside-media",
    "worker-scheduler": "courtside-scheduler",
    "migrate": "courtside-migrate",
    "operator": "courtside-operator",
}
VALUES_KEY_OF_ACCOUNT = {
    "courtside-api": "api",
    "courtside-outbox-relay": "outboxRelay",
    "courtside-notifications": "notifications",
    "courtside-media": "media",
    "courtside-scheduler": "scheduler",
    "courtside-migrate": "migrate",
    "courtside-operator": "operator",
}
# The role each component holds in values-production.yaml (the migrations hold none).
WORKER_ROLES = {
    "outboxRelay": "arn:aws:iam::123456789012:role/courtside-outbox-relay",
    "notifications": "arn:aws:iam::123456789012:role/courtside-notifications-worker",
    "media": "arn:aws:iam::123456789012:role/courtside-media-worker",
    "operator": "arn:aws:iam::123456789012:role/courtside-operator",
    "api": "arn:aws:iam::123456789012:role/courtside-api",
    "scheduler": "arn:aws:iam::123456789012:role/courtside-scheduler",
}
# Each role's policy file in iam/.
POLICY_OF_ROLE = {
    "outboxRelay": "outbox-relay.json",
    "notifications": "notifications-worker.json",
    "media": "media-worker.json",
    "operator": "operator.json",
    "api": "api.json",
    "scheduler": "scheduler.json",
}


def service_accounts(objects: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in by_kind(objects, "ServiceAccount")}


def chart_annotations(obj: dict) -> dict[str, str]:
    """The annotations the chart wrote (Helm adds its own meta.helm.sh/ ones)."""
    return {
        k: v
        for k, v in obj["metadata"].get("annotations", {}).items()
        if not k.startswith(("meta.helm.sh/", "courtside.test/hook"))
    }


def pods_by_component(objects: list[dict]) -> dict[str, list[dict]]:
    pods: dict[str, list[dict]] = {}
    for obj, pod in pod_specs(objects):
        name = obj["metadata"]["labels"].get("app.kubernetes.io/component")
        if name in ACCOUNT_OF_COMPONENT:
            pods.setdefault(name, []).append(pod)
    return pods


def test_every_workload_runs_as_its_own_service_account(objects):
    accounts = service_accounts(objects)
    pods = pods_by_component(objects)
    assert {"api", "worker-outbox-relay", "operator"} <= set(pods)
    for name, specs in pods.items():
        for pod in specs:
            assert pod["serviceAccountName"] == ACCOUNT_OF_COMPONENT[name], name
            assert pod["serviceAccountName"] in accounts, name  # the chart made it
    # No two components share one.
    used = {name: specs[0]["serviceAccountName"] for name, specs in pods.items()}
    assert len(set(used.values())) == len(used)


def test_the_media_scaled_job_runs_as_the_media_worker():
    objects = rendered("values-production.yaml")
    [job] = by_kind(objects, "ScaledJob")
    pod = job["spec"]["jobTargetRef"]["template"]["spec"]
    assert pod["serviceAccountName"] == "courtside-media"
    role = chart_annotations(service_accounts(objects)["courtside-media"])[IRSA_ROLE]
    assert role == "arn:aws:iam::123456789012:role/courtside-media-worker"


def test_each_service_account_carries_the_annotations_given_for_its_component():
    given = {
        key: {"annotations": {"courtside.test/for": key}} for key in VALUES_KEY_OF_ACCOUNT.values()
    }
    for key, role in WORKER_ROLES.items():
        given[key]["annotations"][IRSA_ROLE] = role
    result = run_render(
        {
            **DEFAULT_INSTALL,
            "serviceAccounts": given,
            "keda": {"media": {"mode": "scaledJob"}},
        }
    )
    assert result.returncode == 0, result.stderr[-3000:]
    objects = json.loads(result.stdout)
    accounts = service_accounts(objects)
    assert set(accounts) == set(VALUES_KEY_OF_ACCOUNT)
    for name, account in accounts.items():
        assert chart_annotations(account) == given[VALUES_KEY_OF_ACCOUNT[name]]["annotations"]
        assert account["metadata"]["labels"]["app.kubernetes.io/part-of"] == "courtside"
        kubernetes_validate.validate(_clean(account), K8S_VERSION, strict=True)
    # The pods, the ScaledJob's included, run under the account with their own role.
    pods = pods_by_component(objects)
    assert "worker-media" in pods and not any(
        d["metadata"]["name"] == "courtside-media" for d in by_kind(objects, "Deployment")
    )
    for component, specs in pods.items():
        for pod in specs:
            assert pod["serviceAccountName"] == ACCOUNT_OF_COMPONENT[component]


def irsa_trust(role_service_account: str) -> dict:
    """iam/irsa-trust.json filled in for one role, as iam/README.md says to."""
    text = (CHART / "iam" / "irsa-trust.json").read_text()
    for placeholder, value in {
        "ACCOUNT_ID": "123456789012",
        "REGION": "us-east-1",
        "CLUSTER_OIDC_ID": "EXAMPLE",
        "NAMESPACE": "courtside",
        "SERVICE_ACCOUNT": role_service_account,
    }.items():
        text = text.replace(placeholder, value)
    return json.loads(text)


def trust_admits(policy: dict, token_claims: dict[str, str]) -> bool:
    """Would STS let a web identity with these token claims assume the role?"""
    for statement in policy["Statement"]:
        if statement["Action"] != "sts:AssumeRoleWithWebIdentity":
            continue
        conditions = statement["Condition"]["StringEquals"]
        if all(token_claims.get(key.rsplit(":", 1)[1]) == v for key, v in conditions.items()):
            return True
    return False


def projected_token(pod: dict) -> dict[str, str]:
    """The claims of the token the IRSA webhook mounts in a pod: its ServiceAccount's."""
    return {
        "sub": f"system:serviceaccount:courtside:{pod['serviceAccountName']}",
        "aud": "sts.amazonaws.com",
    }


def _allowed_actions(policy_file: str) -> set[str]:
    policy = json.loads((CHART / "iam" / policy_file).read_text())
    actions: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        found = statement["Action"]
        actions |= {found} if isinstance(found, str) else set(found)
    return actions


def test_only_the_relays_policy_may_send_to_a_queue_and_s3_rights_stay_under_tenants():
    for role, policy_file in POLICY_OF_ROLE.items():
        actions = _allowed_actions(policy_file)
        assert not any("*" in a for a in actions), policy_file
        sends = {a for a in actions if a.startswith("sqs:Send")}
        assert (sends == {"sqs:SendMessage"}) == (role == "outboxRelay"), policy_file
        policy = json.loads((CHART / "iam" / policy_file).read_text())
        for statement in policy["Statement"]:
            found = statement["Action"]
            listed = [found] if isinstance(found, str) else found
            if any(a.startswith("s3:") and a != "s3:ListBucket" for a in listed):
                assert statement["Resource"] == "arn:aws:s3:::courtside-media/tenants/*"
    # What the API does with S3 (app/media/objects.py) and signs for clients.
    assert {"s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts"} <= _allowed_actions(
        "api.json"
    )
    assert not any(a.startswith("sqs:") for a in _allowed_actions("api.json"))
    assert not any(a.startswith("sqs:") for a in _allowed_actions("scheduler.json"))


def test_the_api_pod_cannot_take_the_outbox_relays_role():
    """With the production values, the API and the scheduler get their own roles (S3
    only), the migrations none, and their identity tokens can't assume the relay's role,
    the only one that may sqs:SendMessage: they can't forge queue messages."""
    objects = rendered("values-production.yaml")
    accounts = service_accounts(objects)
    relay_role = WORKER_ROLES["outboxRelay"]
    [relay_account] = [
        name for name, sa in accounts.items() if chart_annotations(sa).get(IRSA_ROLE) == relay_role
    ]
    relay_trust = irsa_trust(relay_account)
    pods = pods_by_component(objects)
    [relay_pod, *_] = pods["worker-outbox-relay"]
    assert trust_admits(relay_trust, projected_token(relay_pod))  # the control
    own_role = {"api": WORKER_ROLES["api"], "worker-scheduler": WORKER_ROLES["scheduler"]}
    for component in ("api", "worker-scheduler", "migrate"):
        for pod in pods[component]:
            account = chart_annotations(accounts[pod["serviceAccountName"]])
            # The webhook injects AWS_ROLE_ARN from this annotation: its own role, or none.
            expected = {IRSA_ROLE: own_role[component]} if component in own_role else {}
            assert account == expected, component
            assert not trust_admits(relay_trust, projected_token(pod)), component
    # And no other pod either.
    for component, specs in pods.items():
        if component != "worker-outbox-relay":
            for pod in specs:
                assert not trust_admits(relay_trust, projected_token(pod)), component


def test_the_api_and_scheduler_carry_none_of_the_workers_annotations(objects):
    accounts = service_accounts(objects)
    worker_annotations = {
        (k, v)
        for name in ("courtside-outbox-relay", "courtside-notifications", "courtside-media")
        if name in accounts
        for k, v in chart_annotations(accounts[name]).items()
    }
    for name in ("courtside-api", "courtside-scheduler"):
        assert not set(chart_annotations(accounts[name]).items()) & worker_annotations, name


def test_two_components_under_one_role_fail_the_render():
    """Giving the API the relay's role by values would be the shared identity again."""
    relay_role = {"annotations": {IRSA_ROLE: WORKER_ROLES["outboxRelay"]}}
    result = run_render(
        {**DEFAULT_INSTALL, "serviceAccounts": {"api": relay_role, "outboxRelay": relay_role}}
    )
    assert result.returncode != 0
    assert "serviceAccounts.api and serviceAccounts.outboxRelay have the same" in result.stderr


def test_no_pod_but_the_operators_mounts_a_kubernetes_api_token(objects):
    for account in by_kind(objects, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False, account["metadata"]["name"]
    for obj, pod in pod_specs(objects):
        is_operator = obj["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
        assert pod["automountServiceAccountToken"] is is_operator, obj["metadata"]["name"]


def test_the_migrations_service_account_exists_before_their_hook_job():
    objects = rendered("")
    account = service_accounts(objects)["courtside-migrate"]
    job = next(o for o in by_kind(objects, "Job") if o["metadata"]["name"] == "courtside-migrate")
    hook = account["metadata"]["annotations"]
    assert hook["courtside.test/hook"] == job["metadata"]["annotations"]["courtside.test/hook"]
    assert int(hook["courtside.test/hook-weight"]) < int(
        job["metadata"]["annotations"]["courtside.test/hook-weight"]
    )


def test_an_existing_service_account_is_used_by_name():
    result = run_render(
        {
            **DEFAULT_INSTALL,
            "serviceAccounts": {"outboxRelay": {"create": False, "name": "relay-made-by-hand"}},
        }
    )
    assert result.returncode == 0, result.stderr[-3000:]
    objects = json.loads(result.stdout)
    assert "courtside-outbox-relay" not in service_accounts(objects)
    [relay] = pods_by_component(objects)["worker-outbox-relay"]
    assert relay["serviceAccountName"] == "relay-made-by-hand"


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"serviceAccounts": {"api": {"create": False}}}, "/serviceAccounts/api/name"),
        ({"serviceAccounts": {"worker": {"create": True}}}, "worker"),
        # The old single account: refused, not silently ignored with its role.
        ({"serviceAccount": {"annotations": {IRSA_ROLE: "arn"}}}, "serviceAccount"),
    ],
)
def test_bad_service_account_values_fail_naming_the_field(bad, field):
    result = run_render({**DEFAULT_INSTALL, **bad})
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert field in result.stderr
