"""`eventforge dashboard`: the local dashboard, alone, against a running stack."""

from __future__ import annotations

import click
from pydantic import ValidationError

from eventforge.cli.local_stack import aimed, port_free
from eventforge.runtime.settings import Settings


@click.command("dashboard")
@click.option(
    "--addr",
    metavar="HOST:PORT",
    help="Where to listen  [default: EVENTFORGE_DASHBOARD_ADDR, 127.0.0.1:8800]",
)
def dashboard_command(addr: str | None) -> None:
    """Serve the dashboard: requests and their waterfalls, the service map, queues and DLQs,
    outboxes, sagas and metrics of the stack the settings point at.

    It reads that stack's span file, services, queues and databases, and receives OTLP/HTTP
    traces and metrics on /v1/traces and /v1/metrics. Loopback only unless
    EVENTFORGE_DASHBOARD_ALLOW_REMOTE is set. `eventforge up` starts it by itself.
    """
    try:
        settings = Settings(dashboard_addr=addr) if addr is not None else Settings()
        settings, where = aimed(settings)
    except ValidationError as error:
        messages = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in error.errors())
        raise click.UsageError(messages) from None
    if not settings.dashboard_addr:
        raise click.UsageError("EVENTFORGE_DASHBOARD_ADDR is empty: give --addr HOST:PORT")
    from eventforge.dashboard.server import serve
    from eventforge.runtime.settings import split_address

    host, port = split_address(settings.dashboard_addr)
    if not port_free(host, port):
        raise click.ClickException(
            f"{settings.dashboard_addr} is in use (another dashboard?); choose another with "
            "--addr or EVENTFORGE_DASHBOARD_ADDR"
        )
    click.echo(f"dashboard         {settings.dashboard_url}", err=True)
    click.echo(f"acting on         {where}", err=True)
    serve(settings)
