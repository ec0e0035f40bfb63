"""KEDA objects as KEDA would act on them: rendered by the real Helm engine, validated against
the vendored KEDA CRDs, and the fields that decide scaling checked one by one (issue 13,
item 12), plus the dev aws-init hook (item 13)."""

import json
import math

import jsonschema
import pytest

from tests.chart.test_chart import (
    DEFAULT_INSTALL,
    KEDA_CRDS,
    _clean,
    by_kind,
    keda_schema,
    run_render,
    values_file,
)
from tests.chart.values import merged, render

# The production values without the operator (its peering is another item's, not KEDA's).
PRODUCTION = merged(values_file("values-production.yaml"), {"operator": {"enabled": False}})
# `skaffold dev -p keda`: the dev values with keda.enabled (skaffold.yaml's setValues).
DEV_KEDA = merged(values_file("values-dev.yaml"), {"keda": {"enabled": True}})
SCALED_JOB = merged(DEFAULT_INSTALL, {"keda": {"media": {"mode": "scaledJob"}}})

VARIANTS = {
    "default": DEFAULT_INSTALL,
    "media-as-jobs": SCALED_JOB,
    "production": PRODUCTION,
    "dev-keda": DEV_KEDA,
}


@pytest.fixture(params=list(VARIANTS), ids=list(VARIANTS))
def objects(request) -> list[dict]:
    return render(VARIANTS[request.param])


def keda_objects(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] in KEDA_CRDS]


def triggers(objects: list[dict]) -> dict[str, dict]:
    """Each scaled object's one trigger, by object name."""
    found = {}
    for obj in objects:
        if obj["kind"] in ("ScaledObject", "ScaledJob"):
            [trigger] = obj["spec"]["triggers"]
            found[f"{obj['kind']}/{obj['metadata']['name']}"] = trigger
    return found


def test_every_keda_object_is_valid_for_the_keda_crds(objects):
    kinds = set()
    for obj in keda_objects(objects):
        jsonschema.validate(_clean(obj), keda_schema(obj["kind"]))
        kinds.add(obj["kind"])
    assert "TriggerAuthentication" in kinds and kinds & {"ScaledObject", "ScaledJob"}


def test_one_message_scales_from_zero(objects):
    """KEDA activates a scaler when the depth is ABOVE activationQueueLength: "0" lets one
    message start a worker from zero. The depth includes in-flight messages."""
    found = triggers(objects)
    assert len(found) == 2, found
    for name, trigger in found.items():
        assert trigger["type"] == "aws-sqs-queue", name
        metadata = trigger["metadata"]
        assert metadata["activationQueueLength"] == "0", name
        assert metadata["scaleOnInFlight"] == "true", name
        depth = 1
        assert depth > int(metadata["activationQueueLength"]), "one message would not activate"
    for obj in objects:
        if obj["kind"] in ("ScaledObject", "ScaledJob"):
            assert obj["spec"].get("minReplicaCount", 0) == 0


def pod_identity(objects: list[dict]) -> dict:
    [auth] = by_kind(objects, "TriggerAuthentication")
    return auth["spec"]["podIdentity"]


def test_keda_reads_each_queue_with_its_workers_own_role():
    """identityOwner: workload makes KEDA assume the role annotated on the scaled workload's
    ServiceAccount: the media and notifications workers' IRSA roles, not KEDA's own."""
    for values in (DEFAULT_INSTALL, PRODUCTION):
        assert pod_identity(render(values)) == {"provider": "aws", "identityOwner": "workload"}
    objects = render(PRODUCTION)
    accounts = {o["metadata"]["name"]: o for o in by_kind(objects, "ServiceAccount")}
    [job] = by_kind(objects, "ScaledJob")
    [scaled] = by_kind(objects, "ScaledObject")
    deployment = next(
        d
        for d in by_kind(objects, "Deployment")
        if d["metadata"]["name"] == scaled["spec"]["scaleTargetRef"]["name"]
    )
    for pod in (
        job["spec"]["jobTargetRef"]["template"]["spec"],
        deployment["spec"]["template"]["spec"],
    ):
        account = accounts[pod["serviceAccountName"]]
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith("-worker")


def test_a_role_arn_replaces_the_identity_owner_as_keda_requires():
    role = "arn:aws:iam::123456789012:role/courtside-keda"
    objects = render(merged(DEFAULT_INSTALL, {"keda": {"roleArn": role}}))
    # KEDA: roleArn and identityOwner are mutually exclusive.
    assert pod_identity(objects) == {"provider": "aws", "roleArn": role}
    keda_own = render(merged(DEFAULT_INSTALL, {"keda": {"identityOwner": "keda"}}))
    assert pod_identity(keda_own) == {"provider": "aws", "identityOwner": "keda"}
    for obj in by_kind(objects, "TriggerAuthentication"):
        jsonschema.validate(_clean(obj), keda_schema("TriggerAuthentication"))


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"keda": {"roleArn": "courtside-keda"}}, "roleArn"),
        ({"keda": {"identityOwner": "pod"}}, "identityOwner"),
        ({"workers": {"media": {"maxJobSeconds": 0}}}, "maxJobSeconds"),
    ],
)
def test_bad_keda_values_fail_naming_the_field(bad, field):
    result = run_render(merged(DEFAULT_INSTALL, bad))
    assert result.returncode != 0
    assert field in result.stderr


def jobs_to_create(
    strategy: str, depth: int, queue_length: int, running: int, pending: int, max_replicas: int
) -> int:
    """KEDA's ScaledJob arithmetic (keda-docs, reference/scaledjob-spec.md, scalingStrategy)."""
    max_scale = min(max_replicas, math.ceil(depth / queue_length))
    if strategy == "default":
        return max(0, max_scale - running)
    if strategy == "accurate":
        if max_scale + running > max_replicas:
            return max(0, max_replicas - running)
        return max(0, max_scale - pending)
    raise AssertionError(strategy)


@pytest.mark.parametrize("values", [SCALED_JOB, PRODUCTION], ids=["media-as-jobs", "production"])
def test_a_long_transcode_in_flight_spawns_no_idle_jobs(values):
    """One message being transcoded: the depth counts it (in flight, scaleOnInFlight) and its
    Job runs. Each polling interval KEDA computes the Jobs to add from the rendered spec; with
    the "default" strategy that is 0, where "accurate" would add an idle Job every time."""
    [job] = by_kind(render(values), "ScaledJob")
    spec = job["spec"]
    strategy = spec["scalingStrategy"]["strategy"]
    assert strategy == "default"
    metadata = spec["triggers"][0]["metadata"]
    in_flight = {
        "depth": 1 if metadata["scaleOnInFlight"] == "true" else 0,
        "queue_length": int(metadata["queueLength"]),
        "running": 1,
        "pending": 0,
        "max_replicas": spec["maxReplicaCount"],
    }
    assert jobs_to_create(strategy, **in_flight) == 0
    assert jobs_to_create("accurate", **in_flight) == 1  # the failure this strategy avoids
    # A new message while one is in flight still gets its Job when queueLength is 1 per Job…
    assert jobs_to_create(strategy, **{**in_flight, "depth": 2, "queue_length": 1}) == 1
    # …and the first message after idle gets one.
    assert jobs_to_create(strategy, **{**in_flight, "depth": 1, "running": 0}) == 1
    # An upgrade leaves running Jobs (transcodes) alone.
    assert spec["rollout"]["strategy"] == "gradual"


def media_pods(objects: list[dict]) -> list[tuple[str, dict]]:
    pods = []
    for obj in objects:
        if obj["kind"] == "ScaledJob":
            pods.append(("ScaledJob", obj["spec"]["jobTargetRef"]["template"]["spec"]))
        elif obj["kind"] == "Deployment" and obj["metadata"]["name"] == "courtside-media":
            pods.append(("Deployment", obj["spec"]["template"]["spec"]))
    return pods


@pytest.mark.parametrize("mode", ["scaledObject", "scaledJob"])
def test_a_scale_down_never_cuts_a_transcode_short(mode):
    """SIGTERM makes the media worker stop receiving and drain its jobs for
    WORKER_SHUTDOWN_GRACE_SECONDS; the kubelet kills it after terminationGracePeriodSeconds.
    Both cover workers.media.maxJobSeconds, in either mode; the other workers keep the
    short grace."""
    values = merged(
        DEFAULT_INSTALL,
        {"keda": {"media": {"mode": mode}}, "workers": {"media": {"maxJobSeconds": 5400}}},
    )
    objects = render(values)
    [(kind, pod)] = media_pods(objects)
    assert kind == {"scaledObject": "Deployment", "scaledJob": "ScaledJob"}[mode]
    [container] = pod["containers"]
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    assert float(env["WORKER_SHUTDOWN_GRACE_SECONDS"]) >= 5400
    assert pod["terminationGracePeriodSeconds"] > float(env["WORKER_SHUTDOWN_GRACE_SECONDS"])
    if mode == "scaledObject":
        [scaled] = [
            o
            for o in by_kind(objects, "ScaledObject")
            if o["metadata"]["name"] == "courtside-media"
        ]
        assert scaled["spec"]["scaleTargetRef"]["name"] == "courtside-media"
    else:
        # A Job past its deadline is SIGTERMed too: the deadline leaves room for a whole job.
        job = next(iter(by_kind(objects, "ScaledJob")))
        assert job["spec"]["jobTargetRef"]["activeDeadlineSeconds"] >= 2 * 5400
    notifications = next(
        d
        for d in by_kind(objects, "Deployment")
        if d["metadata"]["name"] == "courtside-notifications"
    )
    assert notifications["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] < 100


def test_keda_in_the_dev_profile_reaches_moto_across_namespaces():
    """KEDA's operator runs in the keda namespace: the short name courtside-moto would not
    resolve there. With moto's keys from the chart's Secret."""
    objects = render(DEV_KEDA)
    for name, trigger in triggers(objects).items():
        assert trigger["metadata"]["awsEndpoint"] == (
            "http://courtside-moto.courtside.svc.cluster.local:5000"
        ), name
    [auth] = by_kind(objects, "TriggerAuthentication")
    assert {r["key"] for r in auth["spec"]["secretTargetRef"]} == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    # The app itself keeps the in-namespace name (config.awsEndpointUrl).
    [config] = [
        c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "courtside-config"
    ]
    assert config["data"]["AWS_ENDPOINT_URL"] == "http://courtside-moto:5000"


# --- item 13: the dev aws-init Job as a Helm hook ----------------------------------------

HOOK = "courtside.test/hook"  # render.py renames helm.sh/hook so the emulator can install


def hook_annotations(obj: dict) -> dict[str, str]:
    return {
        k.removeprefix("courtside.test/"): v
        for k, v in obj["metadata"].get("annotations", {}).items()
        if k.startswith(HOOK)
    }


def test_aws_init_runs_as_a_post_install_and_post_upgrade_hook():
    objects = render(values_file("values-dev.yaml"))
    [job] = [j for j in by_kind(objects, "Job") if j["metadata"]["name"] == "courtside-aws-init"]
    annotations = hook_annotations(job)
    assert set(annotations["hook"].split(",")) == {"post-install", "post-upgrade"}
    assert "before-hook-creation" in annotations["hook-delete-policy"].split(",")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["aws-init"]
    # Outside dev (no moto) there is no aws-init at all.
    assert not [
        j
        for j in by_kind(render(DEFAULT_INSTALL), "Job")
        if j["metadata"]["name"].endswith("aws-init")
    ]


def test_a_rebuild_changes_no_plain_job_template():
    """What `skaffold dev` does on every rebuild: upgrade with a new image tag. The API
    server refuses any change to a Job's spec.template ("field is immutable",
    helm/helm#7725), so every Job whose template changes must be a hook, which Helm deletes
    (before-hook-creation) and creates anew instead of patching."""
    dev = values_file("values-dev.yaml")
    first = merged(dev, {"image": {"tag": "build-1"}})
    second = merged(dev, {"image": {"tag": "build-2"}})
    result = run_render(first, second)
    assert result.returncode == 0, result.stderr[-3000:]
    before, after = json.loads(result.stdout)
    templates = {
        j["metadata"]["name"]: j["spec"]["template"]
        for j in by_kind(before, "Job")
        if not hook_annotations(j)
    }
    changed = [
        j["metadata"]["name"]
        for j in by_kind(after, "Job")
        if not hook_annotations(j)
        and j["metadata"]["name"] in templates
        and j["spec"]["template"] != templates[j["metadata"]["name"]]
    ]
    assert changed == []
    # The hook itself did get the new image (it is recreated, not patched).
    [hook] = [j for j in by_kind(after, "Job") if j["metadata"]["name"] == "courtside-aws-init"]
    assert hook["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":build-2")
