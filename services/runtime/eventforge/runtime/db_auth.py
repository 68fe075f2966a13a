"""Where PostgreSQL logins come from when libpq is not to read them (`DATABASE_AUTH`).

A password injected once at process start goes stale: RDS rotates its managed password every
7 days while pools open connections for weeks. So each new connection asks a credential source:

- `IamTokens`: a fresh RDS IAM authentication token (it lives 15 minutes) for the URL's user;
- `SecretLogin`: the username and password of a Secrets Manager secret, cached briefly and read
  again as soon as the server refuses them (a rotation costs one failed attempt, no restart).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.engine import URL, Dialect

from eventforge.runtime import aws
from eventforge.runtime.settings import Settings

log = logging.getLogger("eventforge.db")

POSTGRES_PORT = 5432
# libpq's message for a refused password (SCRAM, MD5, plain) and RDS's for a refused IAM token
# ("PAM authentication failed for user"); connection errors carry no SQLSTATE to check instead.
_REFUSED_LOGIN = "authentication failed for user"


@dataclass(frozen=True)
class Login:
    """Credentials for one connection attempt; `username` None keeps the URL's user."""

    password: str
    username: str | None = None

    def connect_params(self) -> dict[str, str]:
        """The psycopg keyword arguments that carry this login."""
        params = {"password": self.password}
        if self.username:
            params["user"] = self.username
        return params


class CredentialSource(Protocol):
    """Gives the login of each new connection."""

    def login(self) -> Login:
        """The credentials to connect with now."""
        ...

    def invalidate(self, refused: Login) -> bool:
        """Forget `refused`, which the server turned down; whether retrying may now succeed."""
        ...


class IamTokens:
    """A new RDS IAM token per connection, signed locally with the process's AWS credentials."""

    def __init__(self, client: aws.RDSAuthTokens, url: URL, region: str) -> None:
        if not url.host or not url.username:
            raise ValueError(
                "DATABASE_AUTH=iam needs the host and the user in DATABASE_URL: "
                "the token is signed for both"
            )
        self._client = client
        self._host = url.host
        self._port = url.port or POSTGRES_PORT
        self._username = url.username
        self._region = region

    def login(self) -> Login:
        """A token valid for 15 minutes, of which the connection attempt needs seconds."""
        token = self._client.generate_db_auth_token(
            DBHostname=self._host, Port=self._port, DBUsername=self._username, Region=self._region
        )
        return Login(token)

    def invalidate(self, refused: Login) -> bool:
        """Nothing is cached: the next login is a new token, which would be refused likewise."""
        return False


class SecretLogin:
    """The login in a Secrets Manager secret, read at connect time and cached for `ttl` seconds.

    Thread-safe: threads that connect together wait for one read of the secret.
    """

    def __init__(
        self,
        read_secret: Callable[[], str],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_secret = read_secret
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: Login | None = None
        self._expires = 0.0

    def login(self) -> Login:
        """The cached login, or the secret's current one once the cache has expired."""
        with self._lock:
            if self._cached is None or self._clock() >= self._expires:
                self._cached = parse_secret(self._read_secret())
                self._expires = self._clock() + self._ttl
            return self._cached

    def invalidate(self, refused: Login) -> bool:
        """Drop the cache if it still holds `refused`; a retry then reads the secret again."""
        with self._lock:
            # Only the refused login: the threads refused together must not each read it again.
            if self._cached == refused:
                self._cached = None
        return True


def parse_secret(secret: str) -> Login:
    """The login in a secret's JSON `{"username", "password"}` (the username is optional)."""
    document = json.loads(secret)
    if not isinstance(document, dict) or not isinstance(document.get("password"), str):
        raise ValueError("the database secret holds no password")
    username = document.get("username")
    return Login(document["password"], username if isinstance(username, str) else None)


def credential_source(settings: Settings, url: URL) -> CredentialSource | None:
    """The source DATABASE_AUTH chooses for `url`; None leaves the login to libpq."""
    if settings.database_auth == "iam":
        return IamTokens(aws.rds(settings), url, settings.aws_region)
    if settings.database_auth == "secret":
        return SecretLogin(
            _secret_reader(settings, str(settings.database_secret_arn)),
            settings.database_secret_cache_seconds,
        )
    return None


def _secret_reader(settings: Settings, secret_arn: str) -> Callable[[], str]:
    client = aws.secretsmanager(settings)

    def read() -> str:
        return client.get_secret_value(SecretId=secret_arn)["SecretString"]

    return read


def connect_with(source: CredentialSource) -> Callable[..., Any]:
    """A `do_connect` listener that logs in with `source`, retrying once when refused."""

    def do_connect(dialect: Dialect, _record: object, cargs: Any, cparams: Any) -> Any:
        login = source.login()
        try:
            return dialect.connect(*cargs, **{**cparams, **login.connect_params()})
        except dialect.loaded_dbapi.OperationalError as error:
            if not refused_login(error) or not source.invalidate(login):
                raise
            log.warning("the database refused its login (rotated?); retrying with a fresh one")
        return dialect.connect(*cargs, **{**cparams, **source.login().connect_params()})

    return do_connect


def refused_login(error: BaseException) -> bool:
    """Whether a connection error is the server refusing the credentials."""
    return _REFUSED_LOGIN in str(error)
