import os
import re
import subprocess
import sys
from pathlib import Path

import cel
import jsonschema
import pytest
import yaml
from courtside_operator.crd import ManifestError, crd, schema, validate_manifest
from courtside_operator.reconcile import condition
from courtside_operator.spec import TenantSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "tenants"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_good_examples_are_accepted(path):
    manifest = validate_manifest(yaml.safe_load(path.read_text()))
    spec = TenantSpec.model_validate(manifest["spec"])
    assert spec.slug == manifest["metadata"]["name"]


@pytest.mark.parametrize(
    "path", sorted((EXAMPLES / "invalid").glob("*.yaml")), ids=lambda p: p.name
)
def test_bad_examples_are_rejected(path):
    with pytest.raises(ManifestError):
        validate_manifest(yaml.safe_load(path.read_text()))


def test_rejection_names_the_rule():
    manifest = yaml.safe_load((EXAMPLES / "invalid" / "upload-larger-than-quota.yaml").read_text())
    with pytest.raises(ManifestError, match="maxUploadBytes must not exceed quotaBytes"):
        validate_manifest(manifest)


def test_slug_is_immutable():
    manifest = yaml.safe_load((EXAMPLES / "riverside-tennis.yaml").read_text())
    renamed = yaml.safe_load((EXAMPLES / "riverside-tennis.yaml").read_text())
    renamed["spec"]["slug"] = "riverside-2"
    with pytest.raises(ManifestError, match="slug is immutable"):
        validate_manifest(renamed, previous=manifest)
    validate_manifest(manifest, previous=manifest)  # unchanged is fine


def test_defaults_are_applied_as_the_api_server_would():
    raw = yaml.safe_load((EXAMPLES / "riverside-tennis.yaml").read_text())
    manifest = validate_manifest(raw)
    assert manifest["spec"]["suspended"] is False
    assert "database" not in manifest["spec"]  # defaults apply inside objects that exist
    raw["spec"]["database"] = {}
    assert validate_manifest(raw)["spec"]["database"] == {"connectionLimit": 10}


# --- kubectl experience: explain, get, strict field validation --------------------------


def _properties(node, path=""):
    """Every (path, schema) under node: object properties and array items, recursively."""
    for key, child in node.get("properties", {}).items():
        where = f"{path}.{key}".lstrip(".")
        yield where, child
        yield from _properties(child, where)
    if isinstance(node.get("items"), dict):
        yield from _properties(node["items"], f"{path}[]")


def test_every_field_has_a_description_for_kubectl_explain():
    root = schema()
    assert root.get("description")
    fields = dict(_properties(root))
    # The API server refuses anything on metadata but name/generateName restrictions, a
    # description included (kubectl explain shows ObjectMeta's own).
    assert fields.pop("metadata") == {"type": "object"}
    undocumented = sorted(p for p, node in fields.items() if not node.get("description"))
    assert undocumented == []
    # The walk reaches every level: spec, nested limits, status and the conditions' items.
    for path in (
        "spec.rateLimits.perTenant.burst",
        "status.usage.storageUsedBytes",
        "status.usage.storageReservedBytes",
        "status.usage.storageQuotaBytes",
        "status.conditions[].reason",
        "spec.deletionPolicy",
    ):
        assert path in fields


def _jsonpath(path: str, obj):
    """The subset of kubectl's JSONPath the printer columns use: `.a.b` and
    `[?(@.key=="value")]`; returns the values found (kubectl prints them space-joined)."""
    found = [obj]
    for step in re.findall(r'\.(\w+)|\[\?\(@\.(\w+)=="([^"]*)"\)\]', path):
        name, key, wanted = step
        nxt = []
        for value in found:
            if name and isinstance(value, dict) and name in value:
                nxt.append(value[name])
            elif key and isinstance(value, list):
                nxt += [item for item in value if item.get(key) == wanted]
        found = nxt
    consumed = "".join(
        m.group(0) for m in re.finditer(r'\.(\w+)|\[\?\(@\.(\w+)=="([^"]*)"\)\]', path)
    )
    assert consumed == path, f"unsupported JSONPath {path!r}"
    return found


def _sample_tenant():
    manifest = validate_manifest(yaml.safe_load((EXAMPLES / "riverside-tennis.yaml").read_text()))
    ready = condition("Ready", True, "Reconciled", "tenant matches its spec", None, 1)
    database = condition("DatabaseReady", False, "DatabaseUnreachable", "timeout", None, 1)
    manifest["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    manifest["status"] = {
        "observedGeneration": 1,
        "secretName": "tenant-riverside-tennis-db",
        "usage": {
            "members": 3,
            "storageUsedBytes": 123456789,
            "storageReservedBytes": 4096,
            "storageQuotaBytes": 53687091200,
            "maxUploadBytes": 524288000,
        },
        "conditions": [database, ready],
    }
    # The sample is a status the operator may write: it passes the CRD's status schema.
    jsonschema.validate(manifest["status"], schema()["properties"]["status"])
    return manifest


def test_printer_columns_show_slug_ready_reason_storage_and_deletion_policy():
    version = next(v for v in crd()["spec"]["versions"] if v["name"] == "v1")
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    tenant = _sample_tenant()
    shown = {name: _jsonpath(c["jsonPath"], tenant) for name, c in columns.items()}
    assert shown["Slug"] == ["riverside-tennis"]
    assert shown["Ready"] == ["True"]
    assert shown["Reason"] == ["Reconciled"]
    assert shown["Storage"] == [123456789] and columns["Storage"]["type"] == "integer"
    assert shown["Quota"] == [53687091200] and columns["Quota"]["priority"] == 1
    assert shown["Deletion"] == ["Delete"]
    assert shown["Age"] == ["2026-01-01T00:00:00Z"]
    # Every column's path names fields the schema declares (a typo would print <none>).
    declared = {p.replace("[]", "") for p, _ in _properties(schema())}
    for column in columns.values():
        fields = ".".join(re.findall(r"\.(\w+)", column["jsonPath"].split("[")[0]))
        assert fields in declared | {"metadata.creationTimestamp"}, column
        assert column.get("description") or column["name"] == "Age"


def test_name_must_equal_slug_via_validate_manifest():
    bad = yaml.safe_load((EXAMPLES / "invalid" / "name-differs-from-slug.yaml").read_text())
    with pytest.raises(ManifestError, match="metadata.name must equal spec.slug"):
        validate_manifest(bad)
    bad["metadata"]["name"] = bad["spec"]["slug"]
    validate_manifest(bad)


def test_name_must_equal_slug_is_a_cel_rule_of_the_crd_itself():
    """The rule the API server runs, evaluated as it would: at the root, where `self` holds
    of metadata only name and generateName."""
    (rule,) = [r for r in schema()["x-kubernetes-validations"] if "metadata.name" in r["rule"]]
    assert "metadata.name must equal spec.slug" in rule["message"]

    def root_self(name, slug):
        return {
            "apiVersion": "courtside.dev/v1",
            "kind": "Tenant",
            "metadata": {"name": name},
            "spec": {"slug": slug},
        }

    assert cel.evaluate(rule["rule"], {"self": root_self("club-a", "club-a")}) is True
    assert cel.evaluate(rule["rule"], {"self": root_self("club-a", "club-b")}) is False


def test_unknown_fields_are_rejected_and_named():
    manifest = yaml.safe_load((EXAMPLES / "riverside-tennis.yaml").read_text())
    manifest["metadata"]["lables"] = {"team": "a"}
    manifest["spec"]["rateLimits"] = {"perIp": {"requests": 5, "windowSecond": 60}}
    manifest["specs"] = {}
    with pytest.raises(ManifestError) as caught:
        validate_manifest(manifest)
    assert caught.value.errors == [
        'unknown field "metadata.lables" (did you mean "labels"?)',
        'unknown field "spec.rateLimits.perIp.windowSecond" (did you mean "windowSeconds"?)',
        'unknown field "specs" (did you mean "spec"?)',
    ]
    # ObjectMeta's own fields are known; a status written back by the operator is too.
    ok = _sample_tenant()
    ok["metadata"] |= {"labels": {"a": "b"}, "annotations": {}, "finalizers": ["x"]}
    validate_manifest(ok)


def test_tenants_apply_rejects_a_typo_without_a_traceback(tmp_path):
    bad = EXAMPLES / "invalid" / "unknown-field.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "courtside.cli", "tenants", "apply", "-f", str(bad)],
        env={**os.environ, "OPERATOR_STATE_DIR": str(tmp_path / "state")},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=EXAMPLES.parents[1],
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'tenant/typo-club rejected:\n  unknown field "spec.supended"' in result.stderr
    assert 'did you mean "suspended"' in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "state" / "typo-club.yaml").exists()  # nothing applied


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("apiVersion: courtside.dev/v1\nmetadata: {name: x\n", "expected ',' or '}'"),
        ("- just\n- a list\n", "a manifest is an object, not a list"),
        (None, "No such file or directory"),
    ],
    ids=["broken-yaml", "not-an-object", "missing-file"],
)
def test_tenants_apply_explains_a_file_it_cannot_read(tmp_path, content, message):
    path = tmp_path / "tenant.yaml"
    if content is not None:
        path.write_text(content)
    result = subprocess.run(
        [sys.executable, "-m", "courtside.cli", "tenants", "apply", "-f", str(path)],
        env={**os.environ, "OPERATOR_STATE_DIR": str(tmp_path / "state")},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=EXAMPLES.parents[1],
    )
    assert result.returncode == 1
    assert f"error: {path}: " in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr
