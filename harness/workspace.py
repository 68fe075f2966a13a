"""What a benchmark or chaos run owns: a temp dir, a fresh PostgreSQL database, an AWS emulator.

Everything is on loopback and removed at the end (the database dropped, the emulator stopped,
the temp dir deleted, the process's AWS variables restored) unless `keep` is set.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from eventforge.runtime.emulator import CREDENTIAL, Emulator, free_port
from eventforge.runtime.settings import Settings

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REGION = "us-east-1"

_AWS_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


def admin_url(variable: str) -> str:
    """The administrative PostgreSQL URL a run creates (and drops) its database on:
    `variable`, else EVENTFORGE_TEST_POSTGRES, else the local server."""
    return os.environ.get(variable, os.environ.get("EVENTFORGE_TEST_POSTGRES", DEFAULT_ADMIN_URL))


def dsn(url: str) -> str:
    """A libpq connection string of a SQLAlchemy or libpq URL."""
    return make_url(url).render_as_string(hide_password=False).replace("+psycopg", "")


def is_loopback(host: str | None) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Workspace:
    """The run's temp dir, database and emulator."""

    root: Path
    database_name: str
    database_url: str
    """SQLAlchemy URL of the run's database."""
    emulator: Emulator

    @property
    def database_host(self) -> str:
        return make_url(self.database_url).host or "127.0.0.1"

    @property
    def database_port(self) -> int:
        return make_url(self.database_url).port or 5432

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        """A direct, autocommit connection to the run's database (for checks and faults)."""
        return psycopg.connect(dsn(self.database_url), autocommit=True, connect_timeout=5)


def isolate_aws_environment(root: Path) -> None:
    """Dummy credentials and no personal AWS configuration, for this process and its children."""
    for name in _AWS_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": CREDENTIAL,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(root / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(root / "aws-credentials"),
        }
    )


def create_database(admin: str, kind: str) -> tuple[str, str]:
    """A new, empty database with a random name: (name, SQLAlchemy URL)."""
    name = f"eventforge_{kind}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn(admin), autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin).set(drivername="postgresql+psycopg", database=name)
    return name, url.render_as_string(hide_password=False)


def drop_database(name: str, admin: str) -> None:
    with psycopg.connect(dsn(admin), autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def workspace(kind: str, *, admin: str, keep: bool = False) -> Iterator[Workspace]:
    """Create a `kind` run's resources, yield them, and remove them whatever happens."""
    host = make_url(admin).host
    if not is_loopback(host):
        raise SystemExit(f"{kind} runs on loopback only; {host} is not")
    root = Path(tempfile.mkdtemp(prefix=f"eventforge-{kind}-"))
    saved = dict(os.environ)
    isolate_aws_environment(root)
    database_name, database_url = create_database(admin, kind)
    emulator = Emulator(
        free_port(), kind=Settings().emulator, log_path=root / "logs" / "emulator.log"
    )
    try:
        emulator.start()
        yield Workspace(root, database_name, database_url, emulator)
    finally:
        emulator.stop()
        drop_database(database_name, admin)
        os.environ.clear()
        os.environ.update(saved)
        if keep:
            print(f"kept {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
