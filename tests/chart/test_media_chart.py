"""The media worker's pods as the chart renders them with the real Helm engine, in both
KEDA modes (a Deployment, or ScaledJob Jobs running `worker media --once`): where its
files go, how much room they get, and the CPU and memory it asks for (issue 14, item 5)."""

import pytest

from tests.chart.test_chart import DEFAULT_INSTALL
from tests.chart.test_install import pod_environment
from tests.chart.test_keda import media_pods
from tests.chart.values import merged, render

MODES = ["scaledObject", "scaledJob"]


def media_pod(values: dict) -> tuple[str, dict, dict]:
    """(kind, pod spec, the worker's environment) of the one media pod template."""
    objects = render(values)
    [(kind, pod)] = media_pods(objects)
    return kind, pod, pod_environment(objects, {"spec": pod})


def in_mode(mode: str, *layers: dict) -> dict:
    return merged(DEFAULT_INSTALL, {"keda": {"media": {"mode": mode}}}, *layers)


@pytest.mark.parametrize("mode", MODES)
def test_the_media_worker_writes_to_a_size_limited_scratch_volume(mode, monkeypatch):
    from app.infra.settings import Settings

    kind, pod, environment = media_pod(in_mode(mode))
    assert kind == {"scaledObject": "Deployment", "scaledJob": "ScaledJob"}[mode]
    [container] = pod["containers"]
    # The directory the worker's settings name, as the pod builds them.
    with monkeypatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        scratch = Settings(_env_file=None).media_scratch_dir
    assert scratch == "/scratch"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = mounts[scratch]
    assert not mount.get("readOnly", False)
    assert volumes[mount["name"]] == {
        "name": mount["name"],
        "emptyDir": {"sizeLimit": "10Gi"},
    }
    # Everything else stays read-only: the scratch volume is where files may go.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert mounts["/tmp"]["name"] != mount["name"]

    # The size is the operator's to choose.
    _, bigger, _ = media_pod(
        in_mode(mode, {"workers": {"media": {"scratch": {"sizeLimit": "40Gi"}}}})
    )
    [scratch_volume] = [v for v in bigger["volumes"] if v["name"] == mount["name"]]
    assert scratch_volume["emptyDir"] == {"sizeLimit": "40Gi"}


@pytest.mark.parametrize("mode", MODES)
def test_the_media_worker_gets_its_own_cpu_memory_and_disk(mode):
    _, pod, _ = media_pod(in_mode(mode))
    [container] = pod["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "512Mi", "ephemeral-storage": "2Gi"},
        "limits": {"cpu": "2", "memory": "1536Mi"},
    }
    chosen = {
        "requests": {"cpu": "3", "memory": "1Gi", "ephemeral-storage": "20Gi"},
        "limits": {"cpu": "4", "memory": "3Gi"},
    }
    _, pod, _ = media_pod(in_mode(mode, {"workers": {"media": {"resources": chosen}}}))
    assert pod["containers"][0]["resources"] == chosen


@pytest.mark.parametrize("mode", MODES)
def test_each_media_pod_is_scaled_for_one_transcode(mode):
    """The worker runs one job at a time (MEDIA_WORKER_CONCURRENCY's default, not
    overridden by the chart), and KEDA asks for a pod or a Job per queued message."""
    objects = render(in_mode(mode))
    [(_, pod)] = media_pods(objects)
    _, _, environment = media_pod(in_mode(mode))
    assert "MEDIA_WORKER_CONCURRENCY" not in environment
    [scaler] = [
        o
        for o in objects
        if o["kind"] in ("ScaledObject", "ScaledJob") and o["metadata"]["name"].endswith("-media")
    ]
    assert scaler["spec"]["triggers"][0]["metadata"]["queueLength"] == "1"


def test_only_the_media_worker_has_a_scratch_volume():
    for obj in render(DEFAULT_INSTALL):
        if obj["kind"] != "Deployment" or obj["metadata"]["name"].endswith("-media"):
            continue
        volumes = obj["spec"]["template"]["spec"].get("volumes", [])
        assert "scratch" not in {v["name"] for v in volumes}, obj["metadata"]["name"]
