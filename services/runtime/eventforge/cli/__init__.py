"""The `eventforge` console command: run the stack and operate its parts."""

from __future__ import annotations

import click

from eventforge.cli.certs import certs_command
from eventforge.cli.dashboard import dashboard_command
from eventforge.cli.jobs import jobs_group, scheduler_command
from eventforge.cli.load import load_command
from eventforge.cli.queues import dlq_group, queues_command
from eventforge.cli.stack import migrate_command, provision_command, serve_command, up_command
from eventforge.cli.trace import trace_command


@click.group()
def main() -> None:
    """Run and operate the EventForge services."""


main.add_command(up_command)
main.add_command(serve_command)
main.add_command(migrate_command)
main.add_command(provision_command)
for _command in (
    queues_command,
    dlq_group,
    jobs_group,
    scheduler_command,
    trace_command,
    dashboard_command,
    load_command,
    certs_command,
):
    main.add_command(_command)
