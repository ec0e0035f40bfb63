"""The operator's Deployment and kopf peering, rendered by the real Helm engine: one replica
replaced with Recreate unless the replicas peer; a peering the chart names is an object it
renders (kopf doesn't create it), valid for the CRD the chart ships."""

import jsonschema
import pytest
import yaml

from tests.chart.test_chart import CHART, DEFAULT_INSTALL, run_render, values_file
from tests.chart.values import merged, render

PEERING_CRD = yaml.safe_load((CHART / "crds" / "kopf-peering.yaml").read_text())


PEERED = merged(DEFAULT_INSTALL, {"operator": {"replicaCount": 2, "peering": "courtside-peers"}})


def operator_deployment(objects: list[dict]) -> dict:
    return next(
        o
        for o in objects
        if o["kind"] == "Deployment"
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    )


def operator_env(objects: list[dict]) -> dict[str, dict]:
    container = operator_deployment(objects)["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container["env"]}


def peerings(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] == "ClusterKopfPeering"]


def peering_rules(objects: list[dict]) -> list[dict]:
    role = next(
        o
        for o in objects
        if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith("-operator")
    )
    return [r for r in role["rules"] if "kopf.dev" in r["apiGroups"]]


def validate_against_crd(obj: dict, crd: dict) -> None:
    """What the API server checks before storing a custom resource: its group, a served
    version, its kind, its scope, and the version's OpenAPI schema."""
    spec = crd["spec"]
    group, version = obj["apiVersion"].split("/")
    assert group == spec["group"]
    served = {v["name"]: v for v in spec["versions"] if v["served"]}
    assert version in served, f"{obj['apiVersion']} is not served by {crd['metadata']['name']}"
    assert obj["kind"] == spec["names"]["kind"]
    if spec["scope"] == "Cluster":
        assert "namespace" not in obj["metadata"]
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    jsonschema.validate(body, served[version]["schema"]["openAPIV3Schema"])


def test_by_default_one_replica_is_replaced_with_recreate():
    objects = render(DEFAULT_INSTALL)
    deployment = operator_deployment(objects)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert peerings(objects) == []
    assert peering_rules(objects) == []
    env = operator_env(objects)
    assert env["OPERATOR_PEERING"]["value"] == ""


def test_a_named_peering_is_rendered_and_valid_for_the_chart_crd():
    objects = render(PEERED)
    [peering] = peerings(objects)
    assert peering["metadata"]["name"] == "courtside-peers"
    validate_against_crd(peering, PEERING_CRD)
    # Helm installs crds/ first: the CRD the object needs is part of the release.
    assert any(
        o["kind"] == "CustomResourceDefinition"
        and o["metadata"]["name"] == PEERING_CRD["metadata"]["name"]
        for o in objects
    )
    deployment = operator_deployment(objects)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"].get("strategy", {}).get("type") != "Recreate"
    env = operator_env(objects)
    assert env["OPERATOR_PEERING"]["value"] == "courtside-peers"
    # Each pod's own name: kopf's peer identity, and what its priority is derived from
    # (courtside_operator.main.peering_priority), so no two peers share the highest one.
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "OPERATOR_PRIORITY" not in env
    rules = peering_rules(objects)
    assert {"get", "patch"} <= {
        verb for r in rules if r.get("resourceNames") == ["courtside-peers"] for verb in r["verbs"]
    }
    assert {"list", "watch"} <= {verb for r in rules for verb in r["verbs"]}


def test_the_crd_schema_rejects_a_broken_peering():
    """The control for the check above: the peering CRD's schema does reject something."""
    [peering] = peerings(render(PEERED))
    broken = {**peering, "status": "not-an-object"}
    with pytest.raises(jsonschema.ValidationError):
        validate_against_crd(broken, PEERING_CRD)


def test_production_values_peer_their_replicas():
    production = values_file("values-production.yaml")
    objects = render(production)
    deployment = operator_deployment(objects)
    [peering] = peerings(objects)
    assert peering["metadata"]["name"] == production["operator"]["peering"]
    assert operator_env(objects)["OPERATOR_PEERING"]["value"] == peering["metadata"]["name"]
    assert deployment["spec"]["replicas"] == production["operator"]["replicaCount"] > 1
    validate_against_crd(peering, PEERING_CRD)


@pytest.mark.parametrize("replicas", [2, 3])
def test_several_replicas_without_peering_fail_the_render(replicas):
    result = run_render(merged(DEFAULT_INSTALL, {"operator": {"replicaCount": replicas}}))
    assert result.returncode != 0
    assert f"operator.replicaCount is {replicas} but operator.peering is empty" in result.stderr
    assert "operator.replicaCount: 1" in result.stderr
