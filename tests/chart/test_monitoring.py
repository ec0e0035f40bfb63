"""Monitoring: the PodMonitor and PrometheusRule (only where the Prometheus Operator's API
is served) and the Grafana dashboard ConfigMap, rendered by the real Helm engine, checked
against the vendored prometheus-operator CRDs and against the metrics the code defines."""

import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.chart.test_chart import DEFAULT_INSTALL as BASE  # what the chart requires

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "courtside"
SCHEMAS = Path(__file__).resolve().parent / "schemas" / "prometheus-operator"
MONITORING_API = [
    ("monitoring.coreos.com/v1/podmonitors", "PodMonitor", True),
    ("monitoring.coreos.com/v1/prometheusrules", "PrometheusRule", True),
]
# Install into an emulator that also serves the Prometheus Operator's API when asked:
# Helm's .Capabilities.APIVersions comes from the cluster's discovery, as on a real one.
RUNNER = """
import asyncio, json, sys
from pathlib import Path
from tests.chart import render
if sys.argv[1] == "with-api":
    render.RESOURCES += {api!r}
steps = asyncio.run(render.render(Path(sys.argv[2]), *map(json.loads, sys.argv[3:])))
json.dump(steps[0], sys.stdout, default=str)
"""
ALL_ON = {
    "monitoring": {
        "labels": {"release": "kube-prometheus-stack"},
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True, "deadLetterQueues": {"enabled": True}},
        "dashboard": {"enabled": True, "annotations": {"grafana_folder": "Courtside"}},
    }
}
KINDS = {"PodMonitor", "PrometheusRule"}


def run(api: bool, values: dict) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            RUNNER.format(api=MONITORING_API),
            "with-api" if api else "without-api",
            str(CHART),
            json.dumps(BASE | values),
        ],
        env={**os.environ, "HELM_DRIVER": "memory"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@cache
def rendered(api: bool, enabled: bool) -> list[dict]:
    result = run(api, ALL_ON if enabled else {})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def of_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def dashboards(objects):
    return [
        o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")
    ]


def test_nothing_is_rendered_by_default_even_with_the_api():
    objects = rendered(api=True, enabled=False)
    assert not [o for o in objects if o["kind"] in KINDS]
    assert dashboards(objects) == []


def test_operator_objects_need_the_api():
    """Enabled, on a cluster without monitoring.coreos.com/v1: no PodMonitor or
    PrometheusRule (the install would fail on them), the dashboard ConfigMap still."""
    objects = rendered(api=False, enabled=True)
    assert not [o for o in objects if o["kind"] in KINDS]
    assert len(dashboards(objects)) == 1


def test_skip_capability_check_renders_them_anyway():
    values = ALL_ON | {"monitoring": ALL_ON["monitoring"] | {"skipCapabilityCheck": True}}
    result = run(False, values)
    # Rendered: a cluster without the CRDs refuses exactly these kinds, as this one does.
    assert result.returncode != 0
    for kind in sorted(KINDS):
        assert f'no matches for kind "{kind}"' in result.stderr, result.stderr[-2000:]


def test_values_schema_checks_the_monitoring_block():
    values = {"monitoring": {"podMonitor": {"enabled": True, "interval": "soon"}}}
    result = run(True, values)
    assert result.returncode != 0 and "interval" in result.stderr, result.stderr[-2000:]
    result = run(True, {"monitoring": {"dashbaord": {"enabled": True}}})
    assert result.returncode != 0 and "dashbaord" in result.stderr, result.stderr[-2000:]


def test_enabled_with_the_api_renders_all_three():
    objects = rendered(api=True, enabled=True)
    assert [len(of_kind(objects, k)) for k in ("PodMonitor", "PrometheusRule")] == [1, 1]
    assert len(dashboards(objects)) == 1


def _clean(obj: dict) -> dict:
    obj = json.loads(json.dumps(obj))
    obj["metadata"].pop("managedFields", None)
    return obj


@cache
def crd_schema(kind: str) -> dict:
    plural = {"PodMonitor": "podmonitors", "PrometheusRule": "prometheusrules"}[kind]
    crd = yaml.safe_load((SCHEMAS / f"monitoring.coreos.com_{plural}.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def _closed(node):
    """The schema with additionalProperties: false wherever it lists properties: the API
    server prunes (and kubectl --validate=strict rejects) fields it does not declare."""
    if isinstance(node, dict):
        node = {k: _closed(v) for k, v in node.items()}
        if "properties" in node and "additionalProperties" not in node:
            if not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_closed(v) for v in node]
    return node


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_operator_objects_are_valid_for_the_vendored_crds(kind):
    (obj,) = of_kind(rendered(api=True, enabled=True), kind)
    obj = _clean(obj)
    schema = _closed(crd_schema(kind))
    # metadata is ObjectMeta (the CRD only says "object").
    schema["properties"]["metadata"] = {"type": "object"}
    # Draft 7, not the metaschema check: the CRDs' patterns are Go regexps ((?i) mid-way).
    jsonschema.Draft7Validator(schema).validate(obj)
    assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_the_crd_check_catches_a_broken_object():
    """The control for the check above: the vendored schema does reject a typo."""
    (monitor,) = of_kind(rendered(api=True, enabled=True), "PodMonitor")
    broken = _clean(monitor)
    broken["spec"]["podMetricsEndpoints"][0]["prot"] = "metrics"
    schema = _closed(crd_schema("PodMonitor"))
    schema["properties"]["metadata"] = {"type": "object"}
    with pytest.raises(jsonschema.ValidationError, match="prot"):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_pod_monitor_scrapes_the_ports_the_pods_expose():
    objects = rendered(api=True, enabled=True)
    (monitor,) = of_kind(objects, "PodMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    scraped = set()
    for workload in of_kind(objects, "Deployment"):
        pod = workload["spec"]["template"]
        if not selector.items() <= pod["metadata"]["labels"].items():
            continue
        ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        if endpoint["port"] in ports:
            scraped.add(pod["metadata"]["labels"]["app.kubernetes.io/component"])
    assert {"api", "worker-outbox-relay", "worker-notifications", "operator"} <= scraped
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["courtside"]}


# Metrics the code defines: prometheus_client's Counter/Gauge/Histogram("name", ...).
DEFINED = re.compile(r"\b(Counter|Gauge|Histogram)\(\s*\"([a-z_:][a-z0-9_:]*)\"", re.S)
SUFFIXES = {"Histogram": ("_bucket", "_sum", "_count")}


@cache
def defined_metrics() -> frozenset[str]:
    names = set()
    for folder in ("app", "workers", "operator"):
        for path in (ROOT / folder).rglob("*.py"):
            for kind, name in DEFINED.findall(path.read_text()):
                names.add(name)
                names.update(name + suffix for suffix in SUFFIXES.get(kind, ()))
    return frozenset(names)


PROMQL_WORDS = {
    "sum", "max", "min", "avg", "by", "without", "rate", "increase", "histogram_quantile",
    "le", "on", "ignoring", "and", "or", "unless", "bool",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Identifiers in a PromQL expression that are not functions, keywords or labels."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_matchers = re.sub(r"\{[^}]*\}", "{}", without_strings)
    without_groupings = re.sub(r"\b(by|without)\s*\([^)]*\)", "", without_matchers)
    without_ranges = re.sub(r"\[[^\]]*\]", "[]", without_groupings)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_ranges))
    return words - PROMQL_WORDS - {"__rate_interval"}


def test_rule_expressions_name_metrics_the_code_defines():
    (rule,) = of_kind(rendered(api=True, enabled=True), "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {
        "CourtsideOutboxBacklogHigh",
        "CourtsideOutboxOldestPendingTooOld",
        "CourtsideOutboxEventsDead",
        "CourtsideWorkerMessagesFailing",
        "CourtsideDeadLetterQueueNotEmpty",
        "CourtsideTenantReconcileFailing",
    } <= set(alerts)
    # DLQ depth is CloudWatch's, through the CloudWatch exporter (documented in values).
    external = {"aws_sqs_approximate_number_of_messages_visible_maximum"}
    for name, alert in alerts.items():
        used = metric_names(alert["expr"])
        assert used, name
        assert used <= defined_metrics() | external, (name, used - defined_metrics())
        assert alert["expr"].count("(") == alert["expr"].count(")"), name
        assert 'namespace="courtside"' in alert["expr"] or name in {
            "CourtsideDeadLetterQueueNotEmpty"
        }
    assert metric_names(alerts["CourtsideDeadLetterQueueNotEmpty"]["expr"]) == external
    assert 'queue_name=~"courtside-.*-dlq"' in alerts["CourtsideDeadLetterQueueNotEmpty"]["expr"]
    # Alert templates reach Alertmanager as Go templates, not as Helm's.
    assert "{{ $value }}" in alerts["CourtsideOutboxBacklogHigh"]["annotations"]["summary"]


def test_the_metric_check_catches_an_unknown_name():
    assert metric_names('sum(rate(courtside_outbox_sent_total{namespace="x"}[5m])) > 0') == {
        "courtside_outbox_sent_total"
    }
    assert "courtside_outbox_sent_total" not in defined_metrics()
    assert {"courtside_outbox_backlog", "courtside_worker_handler_seconds_bucket"} <= (
        defined_metrics()
    )


def test_dashboard_is_grafana_json_over_metrics_the_code_defines():
    objects = rendered(api=True, enabled=True)
    (config,) = dashboards(objects)
    kubernetes_validate.validate(_clean(config), "1.31.0", strict=True)
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config["metadata"]["annotations"]["grafana_folder"] == "Courtside"
    dashboard = json.loads(config["data"]["courtside.json"])
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    shipped = json.loads((CHART / "dashboards" / "courtside.json").read_text())
    assert dashboard == shipped
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= metric_names(target["expr"])
    assert used and used <= defined_metrics(), used - defined_metrics()
    # Every outbox gauge and counter is on it.
    assert {
        "courtside_outbox_backlog",
        "courtside_outbox_oldest_pending_seconds",
        "courtside_outbox_dead_total",
        "courtside_worker_messages_total",
    } <= used


def test_tenant_reconcile_failures_alert_by_reason():
    (rule,) = of_kind(rendered(api=True, enabled=True), "PrometheusRule")
    (alert,) = [
        r
        for g in rule["spec"]["groups"]
        for r in g["rules"]
        if r["alert"] == "CourtsideTenantReconcileFailing"
    ]
    assert alert["expr"] == (
        "sum by (reason) (increase(courtside_operator_reconcile_failures_total"
        '{namespace="courtside"}[15m])) > 0'
    )
    assert alert["for"] == "15m"
    assert "{{ $labels.reason }}" in alert["annotations"]["summary"]
    # The operator's pod exposes the port the PodMonitor scrapes, from METRICS_PORT's value.
    (operator,) = [
        d
        for d in of_kind(rendered(api=True, enabled=True), "Deployment")
        if d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    ]
    (container,) = operator["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    config = [
        c
        for c in of_kind(rendered(api=True, enabled=True), "ConfigMap")
        if c["metadata"]["name"].endswith("-config")
    ]
    assert [str(ports["metrics"])] == [c["data"]["METRICS_PORT"] for c in config]
