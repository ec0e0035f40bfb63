"""Render the chart with the real Helm engine (helm-sdkpy) by installing it into kmock's
Kubernetes emulator, and print the stored objects as JSON. Given more than one set of
values, it installs with the first, upgrades with each next one, and prints the objects
after every step (a list of lists): what `lookup` reads back on upgrades.

Run as its own process: Helm's Go runtime reads HELM_DRIVER=memory from the environment
the process started with, so the caller sets it there.

Hook resources make Helm fetch /openapi/v2, which the emulator doesn't serve, so the chart
is installed from a copy whose hook annotations are renamed; the renamed annotations stay
on the objects, so tests can still check them.
"""

import asyncio
import base64
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import kmock  # noqa: E402
from helm_sdkpy import Configuration, Install, Upgrade  # noqa: E402

from tests.k8s_emulator import ClusterEmulator, kubeconfig  # noqa: E402

HOOK_ANNOTATION = "helm.sh/hook"
NEUTRALISED = "courtside.test/hook"
NAMESPACE = "courtside"
# Every kind the chart may create: (resource, kind, namespaced).
RESOURCES = [
    ("v1/configmaps", "ConfigMap", True),
    ("v1/secrets", "Secret", True),
    ("v1/serviceaccounts", "ServiceAccount", True),
    ("v1/services", "Service", True),
    ("v1/namespaces", "Namespace", False),
    ("apps/v1/deployments", "Deployment", True),
    ("batch/v1/jobs", "Job", True),
    ("networking.k8s.io/v1/ingresses", "Ingress", True),
    ("networking.k8s.io/v1/networkpolicies", "NetworkPolicy", True),
    ("autoscaling/v2/horizontalpodautoscalers", "HorizontalPodAutoscaler", True),
    ("policy/v1/poddisruptionbudgets", "PodDisruptionBudget", True),
    ("rbac.authorization.k8s.io/v1/clusterroles", "ClusterRole", False),
    ("rbac.authorization.k8s.io/v1/clusterrolebindings", "ClusterRoleBinding", False),
    ("rbac.authorization.k8s.io/v1/roles", "Role", True),
    ("rbac.authorization.k8s.io/v1/rolebindings", "RoleBinding", True),
    ("keda.sh/v1alpha1/scaledobjects", "ScaledObject", True),
    ("keda.sh/v1alpha1/scaledjobs", "ScaledJob", True),
    ("keda.sh/v1alpha1/triggerauthentications", "TriggerAuthentication", True),
    ("apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", False),
    ("kopf.dev/v1/clusterkopfpeerings", "ClusterKopfPeering", False),
]


class ChartCluster(ClusterEmulator):
    """Stores a Secret's stringData as base64 data, as the API server does (Helm's
    `lookup` reads `data`)."""

    async def _handle(self, request: Any) -> Any:
        resource = request.resource
        data = request.data
        if getattr(resource, "plural", None) == "secrets" and isinstance(data, dict):
            strings = data.pop("stringData", None) or {}
            encoded = {k: base64.b64encode(str(v).encode()).decode() for k, v in strings.items()}
            if encoded:
                data["data"] = {**(data.get("data") or {}), **encoded}
        return await super()._handle(request)


def neutralised_copy(chart: Path) -> Path:
    target = Path(tempfile.mkdtemp(prefix="courtside-chart-")) / chart.name
    shutil.copytree(chart, target)
    for path in (target / "templates").rglob("*"):
        if path.is_file():
            path.write_text(path.read_text().replace(HOOK_ANNOTATION, NEUTRALISED))
    return target


async def render(chart: Path, *releases: dict) -> list[list[dict]]:
    """Install with the first values, upgrade with each next; the objects after each."""
    copy = neutralised_copy(chart)
    snapshots = []
    try:
        async with ChartCluster() as emulator, kmock.Server(emulator) as server:
            for resource, kind, namespaced in RESOURCES:
                emulator.serve(resource, kind, namespaced=namespaced)
            config = Configuration(
                namespace=NAMESPACE, kubeconfig=kubeconfig(str(server.url), NAMESPACE)
            )
            first, *upgrades = releases
            await Install(config).run("courtside", str(copy), values=first, wait=False, timeout=60)
            snapshots.append(_stored(emulator))
            for values in upgrades:
                await Upgrade(config).run(
                    "courtside", str(copy), values=values, wait=False, timeout=60
                )
                snapshots.append(_stored(emulator))
            return snapshots
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)


def _stored(emulator: ChartCluster) -> list[dict]:
    return [
        json.loads(json.dumps(dict(obj.raw) if hasattr(obj, "raw") else dict(obj), default=str))
        for obj in emulator.objects.values()
        if not getattr(obj, "deleted", False)
    ]


if __name__ == "__main__":
    assert os.environ.get("HELM_DRIVER") == "memory", "run with HELM_DRIVER=memory"
    steps = asyncio.run(render(Path(sys.argv[1]), *map(json.loads, sys.argv[2:])))
    json.dump(steps[0] if len(steps) == 1 else steps, sys.stdout, default=str)
