"""Database logins per new connection (DATABASE_AUTH): RDS IAM tokens signed by botocore, and
Secrets Manager secrets read when connecting — against the local PostgreSQL, a throwaway
password-checking cluster and moto over HTTP."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from eventforge.cli.stack import migrate_command
from eventforge.runtime import aws
from eventforge.runtime.db import create_service_engine, database_role
from eventforge.runtime.db_auth import Login, SecretLogin, connect_with, parse_secret
from eventforge.runtime.emulator import free_port
from eventforge.runtime.settings import Settings
from harness.workspace import dsn
from tests.fixtures.database import rds_auth_token_fields

# --- unit: the secret's cache -------------------------------------------------------------------


class _Secret:
    """A secret store of one secret that counts its reads."""

    def __init__(self, password: str, delay: float = 0.0) -> None:
        self.password = password
        self.delay = delay
        self.reads = 0

    def read(self) -> str:
        self.reads += 1
        time.sleep(self.delay)
        return json.dumps({"username": "eventforge", "password": self.password})


def test_a_secret_is_read_again_only_once_its_cache_expires() -> None:
    now = [0.0]
    secret = _Secret("A")
    logins = SecretLogin(secret.read, ttl=300, clock=lambda: now[0])
    assert logins.login() == Login("A", "eventforge")
    secret.password = "B"
    now[0] = 299.0
    assert logins.login().password == "A"
    now[0] = 300.0
    assert logins.login().password == "B"
    assert secret.reads == 2


def test_only_the_refused_login_is_dropped_from_the_cache() -> None:
    secret = _Secret("A")
    logins = SecretLogin(secret.read, ttl=300)
    refused = logins.login()
    secret.password = "B"
    assert logins.invalidate(refused)
    assert logins.login().password == "B"
    # Another connection refused with A, after the cache already holds B: no read again.
    assert logins.invalidate(refused)
    assert logins.login().password == "B"
    assert secret.reads == 2


def test_threads_connecting_together_wait_for_one_read() -> None:
    secret = _Secret("A", delay=0.05)
    logins = SecretLogin(secret.read, ttl=300)
    got: list[Login] = []
    threads = [threading.Thread(target=lambda: got.append(logins.login())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert secret.reads == 1
    assert {login.password for login in got} == {"A"}


def test_a_secret_without_a_password_is_refused_and_its_username_is_optional() -> None:
    assert parse_secret(json.dumps({"password": "p"})) == Login("p", None)
    for document in ({"username": "eventforge"}, {"password": 7}, ["password"]):
        with pytest.raises(ValueError, match="holds no password"):
            parse_secret(json.dumps(document))


class _UnreachableDialect:
    """A dialect whose every connection attempt finds no server."""

    loaded_dbapi = psycopg

    def __init__(self) -> None:
        self.attempts = 0

    def connect(self, *_args: Any, **_params: Any) -> Any:
        self.attempts += 1
        raise psycopg.OperationalError("connection refused")


def test_an_unreachable_server_is_not_taken_for_a_refused_login() -> None:
    secret = _Secret("A")
    dialect = _UnreachableDialect()
    do_connect = connect_with(SecretLogin(secret.read, ttl=300))
    for _ in range(2):
        with pytest.raises(psycopg.OperationalError, match="connection refused"):
            do_connect(dialect, None, (), {})
    assert dialect.attempts == 2  # no retry: fresh credentials cannot help
    assert secret.reads == 1  # and the cache is kept


def test_iam_needs_the_user_in_the_url(tmp_path: Path) -> None:
    settings = Settings(
        database_url="postgresql://db.example:5432/eventforge",
        database_auth="iam",
        data_dir=tmp_path,
    )
    with pytest.raises(ValueError, match="needs the host and the user"):
        create_service_engine(settings, "orders")


# --- integration: IAM tokens --------------------------------------------------------------------


def _passwords_of_new_connections(engine: Engine) -> list[str]:
    """The password psycopg logged in with, of each connection the engine opens from now on."""
    passwords: list[str] = []

    def connected(dbapi_connection: psycopg.Connection[Any], _record: object) -> None:
        passwords.append(str(dbapi_connection.info.password))

    event.listen(engine, "connect", connected)
    return passwords


class _RecordingTokens:
    """The real RDS client, keeping each token it signs."""

    def __init__(self, client: aws.RDSAuthTokens) -> None:
        self.client = client
        self.tokens: list[str] = []

    def generate_db_auth_token(
        self,
        DBHostname: str,  # noqa: N803 - boto3's names
        Port: int,  # noqa: N803
        DBUsername: str,  # noqa: N803
        Region: str | None = None,  # noqa: N803
    ) -> str:
        token = self.client.generate_db_auth_token(
            DBHostname=DBHostname, Port=Port, DBUsername=DBUsername, Region=Region
        )
        self.tokens.append(token)
        return token


@pytest.fixture
def dummy_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Dummy credentials that botocore signs with, and no personal AWS configuration."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEVENTFORGETEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "dummy-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "PGSSLMODE"):
        monkeypatch.delenv(name, raising=False)
    # A session made by an earlier test keeps the credentials it resolved: start afresh.
    monkeypatch.setattr(aws, "_sessions", {})
    return "AKIAEVENTFORGETEST"


def _iam_settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        database_auth="iam",
        aws_region="eu-west-1",
        aws_endpoint_url=None,
        data_dir=tmp_path,
    )


@pytest.mark.integration
def test_iam_signs_a_new_token_for_each_new_connection(
    database_url: str,
    dummy_aws_credentials: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    signer: list[_RecordingTokens] = []
    real_rds = aws.rds

    def recording_rds(settings: Settings) -> aws.RDSAuthTokens:
        signer.append(_RecordingTokens(real_rds(settings)))
        return signer[-1]

    monkeypatch.setattr(aws, "rds", recording_rds)
    url = make_url(database_url)
    # The local server trusts loopback: it accepts the token, whose form is what is checked.
    engine = create_service_engine(_iam_settings(database_url, tmp_path), "orders", pool_size=2)
    passwords = _passwords_of_new_connections(engine)
    try:
        with engine.connect() as first, engine.connect() as second:
            assert first.scalar(text("SELECT 1")) == second.scalar(text("SELECT 1")) == 1
        with engine.connect():
            pass  # from the pool: no new connection, no new token
    finally:
        engine.dispose()

    [tokens] = signer
    assert len(passwords) == 2
    assert passwords == tokens.tokens
    for password in passwords:
        host, port, query = rds_auth_token_fields(password)
        assert (host, port) == (url.host, url.port or 5432)
        assert query["Action"] == "connect"
        assert query["DBUser"] == url.username
        assert query["X-Amz-Expires"] == "900"
        assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
        key, _date, region, signing_service, _ = query["X-Amz-Credential"].split("/")
        assert (key, region, signing_service) == (dummy_aws_credentials, "eu-west-1", "rds-db")
        assert query["X-Amz-Signature"]


@pytest.mark.integration
def test_iam_connections_honour_pgsslmode(
    database_url: str,
    dummy_aws_credentials: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    with psycopg.connect(dsn(database_url), connect_timeout=5) as admin:
        server_has_tls = admin.execute("SHOW ssl").fetchone() == ("on",)
    monkeypatch.setenv("PGSSLMODE", "require")
    engine = create_service_engine(_iam_settings(database_url, tmp_path), "orders", pool_size=1)
    try:
        if not server_has_tls:
            # libpq must refuse the server rather than send the token in the clear.
            with pytest.raises(OperationalError, match="SSL"):
                engine.connect()
            return
        with engine.connect() as connection:
            driver = connection.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            assert driver.pgconn.ssl_in_use
    finally:
        engine.dispose()


# --- integration: secrets read when connecting --------------------------------------------------


def _create_secret(settings: Settings, document: dict[str, str]) -> str:
    client = aws.secretsmanager(settings)
    name = f"rds-{uuid.uuid4().hex[:8]}"
    return client.create_secret(Name=name, SecretString=json.dumps(document))["ARN"]


def _put_secret(settings: Settings, arn: str, document: dict[str, str]) -> None:
    aws.secretsmanager(settings).put_secret_value(SecretId=arn, SecretString=json.dumps(document))


def _secret_settings(
    aws_settings: Settings, database_url: str, arn: str, cache_seconds: float
) -> Settings:
    return Settings(
        database_url=database_url,
        database_auth="secret",
        database_secret_arn=arn,
        database_secret_cache_seconds=cache_seconds,
        aws_endpoint_url=aws_settings.aws_endpoint_url,
        aws_region=aws_settings.aws_region,
        data_dir=aws_settings.data_dir,
    )


@pytest.mark.integration
def test_a_connection_opened_after_the_cache_expires_uses_the_rotated_secret(
    database_url: str, aws_settings: Settings
) -> None:
    arn = _create_secret(aws_settings, {"username": "postgres", "password": "pw-A"})
    settings = _secret_settings(aws_settings, database_url, arn, cache_seconds=1.0)
    engine = create_service_engine(settings, "orders", pool_size=1)
    passwords = _passwords_of_new_connections(engine)
    try:
        with engine.connect():
            pass
        _put_secret(aws_settings, arn, {"username": "postgres", "password": "pw-B"})
        engine.dispose()
        with engine.connect():
            pass  # a new connection, while the cache is fresh
        time.sleep(1.1)
        engine.dispose()
        with engine.connect():
            pass  # a new connection, the cache expired
    finally:
        engine.dispose()
    assert passwords == ["pw-A", "pw-A", "pw-B"]


@dataclass(frozen=True)
class PasswordCluster:
    """A PostgreSQL server on loopback that checks passwords (SCRAM), unlike the local one."""

    port: int
    admin_password: str

    def url(self, user: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/postgres"

    def execute(self, statement: str) -> None:
        """Run `statement` as the cluster's superuser."""
        self.query(statement)

    def query(self, statement: str) -> list[tuple[Any, ...]]:
        """The rows of `statement`, run as the cluster's superuser."""
        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            password=self.admin_password,
            dbname="postgres",
            autocommit=True,
            connect_timeout=5,
        ) as connection:
            cursor = connection.execute(statement.encode())
            return cursor.fetchall() if cursor.description else []


def _server_binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian's layout)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parent)
    return found[-1].parent if found else None


def _as_cluster_owner() -> list[str]:
    """The command prefix that runs initdb and pg_ctl, which refuse to run as root."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None:
        pytest.fail("running as root without runuser to start PostgreSQL as another user")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root without a postgres OS user to start PostgreSQL as")
    return ["runuser", "-u", "postgres", "--"]


@pytest.fixture(scope="module")
def password_cluster() -> Iterator[PasswordCluster]:
    """A throwaway cluster with scram-sha-256 authentication, stopped and deleted after."""
    binaries = _server_binaries()
    if binaries is None:
        pytest.fail("no PostgreSQL server binaries (initdb): the rotation test needs them")
    prefix = _as_cluster_owner()
    # Not under pytest's temp dir: it is private to this user, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="eventforge-scram-"))
    if prefix:
        shutil.chown(root, user="postgres")
    admin_password = uuid.uuid4().hex
    password_file = root / "admin-password"
    password_file.write_text(admin_password)
    if prefix:
        shutil.chown(password_file, user="postgres")
    data, port = root / "data", free_port()

    def run(*argv: str) -> None:
        subprocess.run([*prefix, *argv], check=True, capture_output=True, timeout=60)

    try:
        run(str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
            "--auth=scram-sha-256", f"--pwfile={password_file}", "--no-sync")  # fmt: skip
        server_options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(str(binaries / "pg_ctl"), "-D", str(data), "-w", "-t", "30",
            "-o", server_options, "-l", str(root / "server.log"), "start")  # fmt: skip
        try:
            yield PasswordCluster(port, admin_password)
        finally:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.integration
def test_a_rotated_password_is_read_again_when_refused_without_a_restart(
    password_cluster: PasswordCluster, aws_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    role = f"app_{uuid.uuid4().hex[:8]}"
    password_cluster.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-A'")
    arn = _create_secret(aws_settings, {"username": role, "password": "pw-A"})
    # The URL's user is replaced by the secret's, as with the RDS master secret.
    url = password_cluster.url("not_the_user")
    settings = _secret_settings(aws_settings, url, arn, cache_seconds=300)
    engine = create_service_engine(settings, "orders", pool_size=1)
    try:
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT current_user")) == role

        # A rotation: the server's password changes, then the secret; the cache is still fresh.
        password_cluster.execute(f"ALTER ROLE {role} PASSWORD 'pw-B'")
        _put_secret(aws_settings, arn, {"username": role, "password": "pw-B"})
        engine.dispose()
        with caplog.at_level("WARNING", logger="eventforge.db"), engine.connect() as connection:
            assert connection.scalar(text("SELECT current_user")) == role
        assert "refused its login" in caplog.text

        # A password the secret does not hold: one retry, then the refusal propagates.
        password_cluster.execute(f"ALTER ROLE {role} PASSWORD 'pw-C'")
        engine.dispose()
        with pytest.raises(OperationalError, match="password authentication failed"):
            engine.connect()
    finally:
        engine.dispose()
        password_cluster.execute(f"DROP ROLE {role}")


@pytest.mark.integration
def test_migrate_logs_in_with_the_secret_as_a_master_that_is_no_superuser(
    password_cluster: PasswordCluster, aws_settings: Settings
) -> None:
    # Like the RDS master: it may create roles and schemas, but is no superuser.
    suffix = uuid.uuid4().hex[:8]
    master, prefix = f"master_{suffix}", f"eventforge_t{suffix}"
    password_cluster.execute(
        f"CREATE ROLE {master} LOGIN CREATEROLE PASSWORD 'pw-M';"
        f"GRANT CREATE ON DATABASE postgres TO {master}"
    )
    arn = _create_secret(aws_settings, {"username": master, "password": "pw-M"})
    result = CliRunner().invoke(
        migrate_command,
        ["orders", "--service-roles"],
        env={
            "DATABASE_URL": password_cluster.url("not_the_user"),
            "EVENTFORGE_DATABASE_AUTH": "secret",
            "EVENTFORGE_DATABASE_SECRET_ARN": arn,
            "AWS_ENDPOINT_URL": aws_settings.aws_endpoint_url,
            "EVENTFORGE_DATABASE_ROLE_PREFIX": prefix,
        },
    )
    try:
        assert result.exit_code == 0, result.output
        owners = password_cluster.query(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'orders' UNION "
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'orders'"
        )
        assert owners == [(database_role("orders", prefix),)]
    finally:
        password_cluster.execute(
            f"DROP SCHEMA IF EXISTS orders CASCADE; DROP OWNED BY {master}; DROP ROLE {master};"
            f"DROP ROLE IF EXISTS {database_role('orders', prefix)}"
        )
