"""What a benchmark run owns: a temp dir, a fresh PostgreSQL database, an AWS emulator.

Everything is created on loopback and removed at the end (the database is dropped, the
emulator stopped, the temp dir deleted) unless `keep` is set.
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

import psycopg
from sqlalchemy.engine import make_url

from eventforge.runtime.emulator import Emulator, free_port
from eventforge.runtime.settings import Settings

ADMIN_URL = os.environ.get(
    "EVENTFORGE_BENCH_POSTGRES",
    os.environ.get("EVENTFORGE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"),
)
"""An administrative PostgreSQL URL: the run creates (and drops) its database there."""

BENCH_PREFIX = "bench"
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


def admin_dsn(url: str = ADMIN_URL) -> str:
    """A psycopg connection string of a SQLAlchemy or libpq URL."""
    return make_url(url).render_as_string(hide_password=False).replace("+psycopg", "")


@dataclass(frozen=True)
class Workspace:
    """The run's temp dir, database and emulator, and settings that point at them."""

    root: Path
    database_name: str
    database_url: str
    emulator: Emulator
    settings: Settings
    """For the in-process benchmarks: the run's emulator and database, prefix `bench`."""


def isolate_aws_environment(root: Path) -> None:
    """Dummy credentials and no personal AWS configuration, for this process and its children."""
    for name in _AWS_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(root / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(root / "aws-credentials"),
        }
    )


def create_database(admin_url: str = ADMIN_URL) -> tuple[str, str]:
    """A new, empty database with a random name: (name, SQLAlchemy URL)."""
    name = f"eventforge_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn(admin_url), autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(drivername="postgresql+psycopg", database=name)
    return name, url.render_as_string(hide_password=False)


def drop_database(name: str, admin_url: str = ADMIN_URL) -> None:
    with psycopg.connect(admin_dsn(admin_url), autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def workspace(*, keep: bool = False, admin_url: str = ADMIN_URL) -> Iterator[Workspace]:
    """Create the run's resources, yield them, and remove them whatever happens."""
    root = Path(tempfile.mkdtemp(prefix="eventforge-bench-"))
    saved = dict(os.environ)
    isolate_aws_environment(root)
    database_name, database_url = create_database(admin_url)
    emulator = Emulator(free_port(), log_path=root / "emulator.log")
    try:
        emulator.start()
        settings = Settings(
            database_url=database_url,
            aws_endpoint_url=emulator.url,
            aws_region=REGION,
            name_prefix=BENCH_PREFIX,
            data_dir=root / "inprocess",
            emulator_port=emulator.port,
        )
        yield Workspace(root, database_name, database_url, emulator, settings)
    finally:
        emulator.stop()
        drop_database(database_name, admin_url)
        os.environ.clear()
        os.environ.update(saved)
        if keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
