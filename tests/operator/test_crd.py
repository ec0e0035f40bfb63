from pathlib import Path

import pytest
import yaml
from courtside_operator.crd import ManifestError, validate_manifest
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
