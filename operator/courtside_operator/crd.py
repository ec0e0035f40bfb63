"""The Tenant CRD (one file, shared with the Helm chart) and validation of manifests
against it: its structural schema (jsonschema) and its CEL rules (x-kubernetes-validations,
evaluated with a CEL implementation), with the schema's defaults applied."""

import copy
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


def _cel_errors(node: dict[str, Any], value: Any, old: Any, path: str) -> list[str]:
    errors = []
    for rule in node.get("x-kubernetes-validations", []):
        expression = rule["rule"]
        if "oldSelf" in expression and old is None:
            continue  # a transition rule: only checked on update
        context = {"self": value} | ({"oldSelf": old} if old is not None else {})
        if cel.evaluate(expression, context) is not True:
            errors.append(f"{path or '<root>'}: {rule.get('message', expression)}")
    if isinstance(value, dict):
        for key, child in node.get("properties", {}).items():
            if key in value:
                old_child = old.get(key) if isinstance(old, dict) else None
                errors += _cel_errors(child, value[key], old_child, f"{path}.{key}".lstrip("."))
    return errors


def validate_manifest(
    manifest: dict[str, Any], previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Validate like the API server would; returns the manifest with defaults applied."""
    errors = []
    if manifest.get("apiVersion") != f"{GROUP}/{VERSION}" or manifest.get("kind") != KIND:
        errors.append(f"apiVersion/kind must be {GROUP}/{VERSION} {KIND}")
    name = (manifest.get("metadata") or {}).get("name")
    if not name:
        errors.append("metadata.name is required")
    root = schema()
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
