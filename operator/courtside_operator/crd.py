"""The Tenant CRD (one file, shared with the Helm chart) and validation of manifests
against it: its structural schema (jsonschema) and its CEL rules (x-kubernetes-validations,
evaluated with a CEL implementation), with the schema's defaults applied."""

import copy
import difflib
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import cel
import jsonschema
import yaml

GROUP, VERSION, PLURAL, KIND = "courtside.dev", "v1", "tenants", "Tenant"
_CANDIDATES = [
    Path(__file__).resolve().parents[2] / "charts" / "courtside" / "crds",
    Path.cwd() / "charts" / "courtside" / "crds",
]


class ManifestError(ValueError):
    """A manifest the API server would reject; `errors` lists why."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@cache
def crd() -> dict[str, Any]:
    for folder in _CANDIDATES:
        path = folder / "tenants.courtside.dev.yaml"
        if path.exists():
            return dict(yaml.safe_load(path.read_text()))
    raise FileNotFoundError("tenants.courtside.dev.yaml not found under charts/courtside/crds")


def schema() -> dict[str, Any]:
    version = next(v for v in crd()["spec"]["versions"] if v["name"] == VERSION)
    return dict(version["schema"]["openAPIV3Schema"])


def _apply_defaults(node: dict[str, Any], value: Any) -> Any:
    if not isinstance(value, dict) or node.get("type") != "object":
        return value
    for key, child in node.get("properties", {}).items():
        if key not in value and "default" in child:
            value[key] = copy.deepcopy(child["default"])
        if key in value:
            value[key] = _apply_defaults(child, value[key])
    return value


# ObjectMeta's fields (k8s.io/apimachinery meta/v1): strict field validation rejects any
# other key under metadata, as it rejects keys the CRD's schema does not declare.
OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
# What CEL raises for a rule that does not evaluate (a missing key, mismatched types, a
# syntax error, an undefined variable): the API server rejects the object then too.
_CEL_FAILURES = (KeyError, TypeError, ValueError, RuntimeError)


def _unknown_fields(node: dict[str, Any], value: Any, path: str) -> list[str]:
    """Keys the structural schema does not declare, as `kubectl --validate=strict` reports
    them (a cluster would otherwise prune them silently)."""
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [
            error
            for index, item in enumerate(value)
            for error in _unknown_fields(node["items"], item, f"{path}[{index}]")
        ]
    if not isinstance(value, dict) or node.get("type") != "object":
        return []
    properties: dict[str, Any] = node.get("properties", {})
    extra = node.get("additionalProperties")
    errors = []
    for key, child in value.items():
        where = f"{path}.{key}" if path else str(key)
        if key in properties:
            errors += _unknown_fields(properties[key], child, where)
        elif isinstance(extra, dict):
            errors += _unknown_fields(extra, child, where)
        elif extra is not True:
            errors.append(_unknown(where, key, properties))
    return errors


def _unknown(where: str, key: object, known: Iterable[str]) -> str:
    hint = difflib.get_close_matches(str(key), list(known), n=1)
    return f'unknown field "{where}"' + (f' (did you mean "{hint[0]}"?)' if hint else "")


def _metadata_errors(manifest: dict[str, Any]) -> list[str]:
    metadata = manifest.get("metadata")
    if metadata is None:
        return ["metadata.name is required"]
    if not isinstance(metadata, dict):
        return ["metadata: must be an object"]
    errors = [
        _unknown(f"metadata.{key}", key, OBJECT_META_FIELDS)
        for key in metadata
        if key not in OBJECT_META_FIELDS
    ]
    if not metadata.get("name"):
        errors.append("metadata.name is required")
    return errors


def _root_view(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a root rule's `self` holds on the API server: the declared fields, and of
    metadata only name and generateName."""
    metadata = manifest.get("metadata") or {}
    return {k: v for k, v in manifest.items() if k != "metadata"} | {
        "metadata": {k: metadata[k] for k in ("name", "generateName") if k in metadata}
    }


def _cel_errors(node: dict[str, Any], value: Any, old: Any, path: str) -> list[str]:
    errors = []
    if not path:
        value = _root_view(value)
        old = _root_view(old) if isinstance(old, dict) else None
    for rule in node.get("x-kubernetes-validations", []):
        expression = rule["rule"]
        if "oldSelf" in expression and old is None:
            continue  # a transition rule: only checked on update
        context = {"self": value} | ({"oldSelf": old} if old is not None else {})
        try:
            passed = cel.evaluate(expression, context) is True
        except _CEL_FAILURES as exc:
            errors.append(f"{path or '<root>'}: rule {expression!r} failed to evaluate: {exc}")
            continue
        if not passed:
            errors.append(f"{path or '<root>'}: {rule.get('message', expression)}")
    if isinstance(value, dict):
        for key, child in node.get("properties", {}).items():
            if key in value and key != "metadata":
                old_child = old.get(key) if isinstance(old, dict) else None
                errors += _cel_errors(child, value[key], old_child, f"{path}.{key}".lstrip("."))
    return errors


def validate_manifest(
    manifest: dict[str, Any], previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Validate like the API server with kubectl's strict field validation would: unknown
    fields, the structural schema, then the CEL rules. Returns the manifest with defaults
    applied; raises ManifestError listing every problem."""
    if not isinstance(manifest, dict):
        raise ManifestError([f"a manifest is an object, not {type(manifest).__name__}"])
    errors = []
    if manifest.get("apiVersion") != f"{GROUP}/{VERSION}" or manifest.get("kind") != KIND:
        errors.append(f"apiVersion/kind must be {GROUP}/{VERSION} {KIND}")
    root = schema()
    errors += _metadata_errors(manifest)
    errors += _unknown_fields(root, {k: v for k, v in manifest.items() if k != "metadata"}, "")
    validator = jsonschema.Draft7Validator(root)
    errors += [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(manifest)
    ]
    if errors:
        raise ManifestError(errors)
    defaulted = _apply_defaults(root, copy.deepcopy(manifest))
    errors = _cel_errors(root, defaulted, previous, "")
    if errors:
        raise ManifestError(errors)
    return defaulted
