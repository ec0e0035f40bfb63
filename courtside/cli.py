"""The `courtside` command."""

import argparse
import asyncio
import importlib
import inspect
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

    from app.infra.settings import Settings


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


def _api(args: argparse.Namespace) -> None:
    import uvicorn

    from app.infra.observability import serve_metrics

    settings = _settings()
    serve_metrics(settings.metrics_port, args.host)
    trusted_proxies = settings.forwarded_allow_ips
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port or settings.port,
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


def _migrate(args: argparse.Namespace) -> None:
    from app.infra.dbadmin import bootstrap, migrate

    settings = _settings()
    admin_url = args.bootstrap or os.environ.get("DATABASE_ADMIN_URL")
    if admin_url:
        asyncio.run(bootstrap(admin_url, settings))
    migrate(settings)
    print("migrations applied")


def _seed(_: argparse.Namespace) -> None:
    from courtside.local.seed import seed_demo

    tenant_id = asyncio.run(seed_demo(_settings()))
    print(f"demo tenant ready: {tenant_id}")


def _worker(args: argparse.Namespace) -> None:
    from app.infra.logging import configure_logging
    from workers import WORKERS

    if args.name not in WORKERS:
        sys.exit(f"unknown worker {args.name!r}; known: {', '.join(sorted(WORKERS)) or 'none'}")
    module_name, _, function_name = WORKERS[args.name].partition(":")
    settings = _settings()
    configure_logging(settings.log_level)
    run = getattr(importlib.import_module(module_name), function_name)
    if args.once and "once" not in inspect.signature(run).parameters:
        sys.exit(f"worker {args.name!r} has no --once mode")
    asyncio.run(run(settings, once=True) if args.once else run(settings))


def _aws_init(_: argparse.Namespace) -> None:
    from app.infra.aws import ensure_resources

    for name, url in asyncio.run(ensure_resources(_settings())).items():
        print(f"{name}: {url}")


def _operator(_: argparse.Namespace) -> None:
    _settings()  # refuse to start on bad settings before kopf takes over
    try:
        from courtside_operator.main import run_operator
    except ImportError as exc:
        sys.exit(f"operator not available: {exc}")
    run_operator()


def _tenants(args: argparse.Namespace) -> None:
    try:
        from courtside_operator.cli import main as tenants_main
    except ImportError as exc:
        sys.exit(f"tenant commands not available: {exc}")
    tenants_main(args.rest)


def _dev(args: argparse.Namespace) -> None:
    from courtside.local.devrunner import run_dev

    run_dev(port=args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="courtside", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server in a pod
    api.add_argument("--port", type=int, default=None)
    api.set_defaults(func=_api)
    mig = sub.add_parser("migrate", help="apply database migrations (owner role)")
    mig.add_argument(
        "--bootstrap",
        metavar="ADMIN_URL",
        default=None,
        help="first create roles and database with this superuser URL",
    )
    mig.set_defaults(func=_migrate)
    sub.add_parser("seed", help="create the demo tenant and users").set_defaults(func=_seed)
    worker = sub.add_parser("worker", help="run a background worker")
    worker.add_argument("name")
    worker.add_argument(
        "--once",
        action="store_true",
        help="exit when the queue is empty (media jobs under KEDA ScaledJob)",
    )
    worker.set_defaults(func=_worker)
    sub.add_parser("aws-init", help="create the bucket and queues (dev clusters)").set_defaults(
        func=_aws_init
    )
    sub.add_parser("operator", help="run the Tenant operator (kopf)").set_defaults(func=_operator)
    tenants = sub.add_parser(
        "tenants", help="apply, list and inspect Tenant manifests", add_help=False
    )
    tenants.add_argument("rest", nargs=argparse.REMAINDER)
    tenants.set_defaults(func=_tenants)
    dev = sub.add_parser("dev", help="run the whole product locally")
    dev.add_argument("--port", type=int, default=None)
    dev.set_defaults(func=_dev)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
