"""Commands that start, migrate and provision the services."""

from __future__ import annotations

import faulthandler
import importlib
import importlib.util
import logging
import os
import signal
import threading
from collections.abc import Sequence

import click

from eventforge.runtime.settings import ALL_SERVICES, ServiceName, Settings
from eventforge.runtime.signals import stop_on_signals

ROLES = ("api", "worker", "relay")
SERVICE_ROLES = ("api", "worker")
"""Roles a service implements in its entrypoints package; every service gets the shared relay."""


def roles_of(service: ServiceName) -> list[str]:
    """The process roles a service runs."""
    own = [
        role
        for role in SERVICE_ROLES
        if importlib.util.find_spec(f"eventforge.{service}.entrypoints.{role}") is not None
    ]
    return [*own, "relay"]


def run_role(settings: Settings, service: ServiceName, role: str, stop: threading.Event) -> None:
    """Run one process role of a service until `stop` is set."""
    if role == "relay":
        from eventforge.runtime.messaging import relay_process

        relay_process.main(settings, service, stop)
    else:
        importlib.import_module(f"eventforge.{service}.entrypoints.{role}").main(settings, stop)


def run_roles(
    settings: Settings, service: ServiceName, roles: Sequence[str], stop: threading.Event
) -> int:
    """Run roles of a service in this process, a thread each, until `stop` is set.

    A role that fails (or returns before `stop`) stops the others: the process exits with 1 and
    its supervisor restarts it whole. Returns the exit code.
    """
    log = logging.getLogger("eventforge")
    failed: list[str] = []

    def run(role: str) -> None:
        try:
            run_role(settings, service, role, stop)
            if not stop.is_set():
                failed.append(role)
                log.error("%s %s returned before it was told to stop", service, role)
        except BaseException:
            failed.append(role)
            log.exception("%s %s failed; stopping the process", service, role)
        finally:
            stop.set()

    threads = [threading.Thread(target=run, args=(role,), name=role) for role in roles]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join()
    return 1 if failed else 0


@click.command("serve")
@click.argument("service", type=click.Choice(ALL_SERVICES))
@click.argument("roles", nargs=-1, required=True, type=click.Choice(ROLES))
def serve_command(service: ServiceName, roles: tuple[str, ...]) -> None:
    """Run a service's API (gRPC or HTTP), queue worker or outbox relay (or several of them in
    one process).

    Each role is its own process in the cloud, so that it scales on its own; locally
    `eventforge up` runs all three of a service in one process (`serve orders api worker relay`).
    """
    from eventforge.runtime.logs import configure_logging
    from eventforge.runtime.telemetry import configure_telemetry

    settings = Settings()
    configure_logging(service, settings.log_level)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: what a stuck process is doing.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    stop = stop_on_signals()
    telemetry = configure_telemetry(service, settings)
    roles = tuple(dict.fromkeys(roles))
    logging.getLogger("eventforge").info(
        "starting %s %s (pid %d)", service, " ".join(roles), os.getpid()
    )
    try:
        code = run_roles(settings, service, roles, stop)
    finally:
        telemetry.shutdown()
    raise SystemExit(code)


@click.command("migrate")
@click.argument("services", nargs=-1, type=click.Choice(ALL_SERVICES))
@click.option(
    "--service-roles",
    is_flag=True,
    help="Give each service's schema, and everything in it, to the service's own login role "
    "(eventforge_<service>, created if missing; an IAM user on RDS). Run as the master user.",
)
def migrate_command(services: tuple[ServiceName, ...], service_roles: bool) -> None:
    """Bring each service's database schema to the latest revision (all by default)."""
    from eventforge.runtime.db import database_url
    from eventforge.runtime.migrations import migrate

    settings = Settings()
    if service_roles and database_url(settings, ALL_SERVICES[0]).get_backend_name() != "postgresql":
        raise click.UsageError("--service-roles needs PostgreSQL: set DATABASE_URL")
    for service in services or ALL_SERVICES:
        migrate(settings, service, service_roles=service_roles)
        click.echo(f"migrated {service}")


@click.command("provision")
def provision_command() -> None:
    """Create the topics, queues, subscriptions and buckets of the topology (idempotent)."""
    from eventforge.cli.local_stack import operator_settings
    from eventforge.runtime.provision import provision
    from eventforge.topology import TOPOLOGY

    settings = operator_settings()  # says where; finds a running local stack
    provision(settings, TOPOLOGY)
    click.echo(f"provisioned topology with prefix {settings.name_prefix!r}")


@click.command("up")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for SERVING.")
def up_command(timeout: float) -> None:
    """Run the whole system locally: emulator, topology, migrations and every process."""
    from eventforge.cli.up import run_stack

    raise SystemExit(run_stack(Settings(), timeout))
