"""Commands that start, migrate and provision the services."""

from __future__ import annotations

import faulthandler
import importlib
import importlib.util
import logging
import os
import signal

import click

from eventforge.runtime.settings import SERVICES, ServiceName, Settings

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


def run_role(settings: Settings, service: ServiceName, role: str) -> None:
    """Run one process role of a service until it is told to stop."""
    if role == "relay":
        from eventforge.runtime.messaging import relay_process

        relay_process.main(settings, service)
    else:
        importlib.import_module(f"eventforge.{service}.entrypoints.{role}").main(settings)


@click.command("serve")
@click.argument("service", type=click.Choice(SERVICES))
@click.argument("role", type=click.Choice(ROLES))
def serve_command(service: ServiceName, role: str) -> None:
    """Run one process of a service: its gRPC API, queue worker or outbox relay."""
    from eventforge.runtime.logs import configure_logging
    from eventforge.runtime.telemetry import configure_telemetry

    settings = Settings()
    configure_logging(service, settings.log_level)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: what a stuck process is doing.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    telemetry = configure_telemetry(service, settings)
    logging.getLogger("eventforge").info("starting %s %s (pid %d)", service, role, os.getpid())
    try:
        run_role(settings, service, role)
    finally:
        telemetry.shutdown()


@click.command("migrate")
@click.argument("services", nargs=-1, type=click.Choice(SERVICES))
def migrate_command(services: tuple[ServiceName, ...]) -> None:
    """Bring each service's database schema to the latest revision (all by default)."""
    from eventforge.runtime.migrations import migrate

    settings = Settings()
    for service in services or SERVICES:
        migrate(settings, service)
        click.echo(f"migrated {service}")


@click.command("provision")
def provision_command() -> None:
    """Create the topics, queues, subscriptions and buckets of the topology (idempotent)."""
    from eventforge.runtime.provision import provision
    from eventforge.topology import TOPOLOGY

    settings = Settings()
    provision(settings, TOPOLOGY)
    click.echo(f"provisioned topology with prefix {settings.name_prefix!r}")


@click.command("up")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for SERVING.")
def up_command(timeout: float) -> None:
    """Run the whole system locally: emulator, topology, migrations and every process."""
    from eventforge.cli.up import run_stack

    raise SystemExit(run_stack(Settings(), timeout))
