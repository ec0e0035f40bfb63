"""Render the chart with the real Helm engine (helm-sdkpy) by installing it into kmock's
Kubernetes emulator, and print the stored objects as JSON.

Run as its own process: Helm's Go runtime reads HELM_DRIVER=memory from the environment
the process started with, so the caller sets it there.

Hook resources make Helm fetch /openapi/v2, which the emulator doesn't serve, so the chart
is installed from a copy whose hook annotations are renamed; the renamed annotations stay
on the objects, so tests can still check them.
"""

import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import kmock  # noqa: E402
from helm_sdkpy import Configuration, Install  # noqa: E402

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
]


def neutralised_copy(chart: Path) -> Path:
    target = Path(tempfile.mkdtemp(prefix="courtside-chart-")) / chart.name
    shutil.copytree(chart, target)
    for path in (target / "templates").rglob("*"):
        if path.is_file():
            path.write_text(path.read_text().replace(HOOK_ANNOTATION, NEUTRALISED))
    return target


async def render(chart: Path, values: dict) -> list[dict]:
    copy = neutralised_copy(chart)
    try:
        async with ClusterEmulator() as emulator, kmock.Server(emulator) as server:
            for resource, kind, namespaced in RESOURCES:
                emulator.serve(resource, kind, namespaced=namespaced)
            config = Configuration(
                namespace=NAMESPACE, kubeconfig=kubeconfig(str(server.url), NAMESPACE)
            )
            await Install(config).run("courtside", str(copy), values=values, wait=False, timeout=60)
            return [
                dict(obj.raw) if hasattr(obj, "raw") else dict(obj)
                for obj in emulator.objects.values()
            ]
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)


if __name__ == "__main__":
    assert os.environ.get("HELM_DRIVER") == "memory", "run with HELM_DRIVER=memory"
    objects = asyncio.run(render(Path(sys.argv[1]), json.loads(sys.argv[2])))
    json.dump(objects, sys.stdout, default=str)
