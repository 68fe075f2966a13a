"""`eventforge certs`: a local CA and per-service certificates for mTLS in development."""

from __future__ import annotations

from pathlib import Path

import click

from eventforge.runtime.settings import SERVICES


@click.command("certs")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".eventforge/certs"),
    show_default=True,
    help="Where to write ca.pem and NAME.pem / NAME-key.pem.",
)
@click.option(
    "--client",
    "clients",
    multiple=True,
    default=("operator",),
    show_default=True,
    help="Client identities to issue besides the services (repeatable).",
)
def certs_command(directory: Path, clients: tuple[str, ...]) -> None:
    """Create a development CA (kept if present) and a certificate for every service and client."""
    # cryptography costs every process ~10 MB; only this command needs it.
    from eventforge.runtime.certs import create_ca, issue

    ca = create_ca(directory)
    click.echo(f"CA           {ca.cert}")
    for name in (*SERVICES, *clients):
        issued = issue(directory, name)
        click.echo(f"{name:<12} {issued.cert}")
    click.echo(
        f"\nTurn mTLS on with EVENTFORGE_TLS_DIR={directory}; clients set "
        f"EVENTFORGE_TLS_IDENTITY to their name and EVENTFORGE_AUTHZ_CLIENTS lists them."
    )
