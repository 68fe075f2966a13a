"""Settings come from the environment, with the standard variable names where they exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from eventforge.runtime.db import database_url
from eventforge.runtime.settings import Settings


def test_defaults_run_locally_without_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.database_url is None
    assert settings.address_of("orders") == "127.0.0.1:50051"
    assert settings.address_of("files") == "127.0.0.1:50052"
    assert settings.address_of("notifier") == "127.0.0.1:50053"
    assert settings.spans_path == Path(".eventforge/spans.jsonl")
    assert str(database_url(settings, "orders")) == "sqlite:///.eventforge/orders.db"


def test_standard_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db:5432/eventforge")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("EVENTFORGE_NAME_PREFIX", "eventforge-staging")
    monkeypatch.setenv("EVENTFORGE_ORDERS_ADDR", "0.0.0.0:6000")
    settings = Settings()
    assert settings.aws_endpoint_url == "http://127.0.0.1:4566"
    assert settings.aws_region == "eu-west-1"
    assert settings.name_prefix == "eventforge-staging"
    assert settings.address_of("orders") == "0.0.0.0:6000"
    url = database_url(settings, "orders")
    assert url.drivername == "postgresql+psycopg"
    assert url.database == "eventforge"


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTFORGE_GRPC_MAX_WORKERS", "0")
    with pytest.raises(ValidationError, match="grpc_max_workers"):
        Settings()


def test_secret_database_auth_needs_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTFORGE_DATABASE_SECRET_ARN", raising=False)
    monkeypatch.setenv("EVENTFORGE_DATABASE_AUTH", "secret")
    with pytest.raises(ValidationError, match="needs EVENTFORGE_DATABASE_SECRET_ARN"):
        Settings()
    monkeypatch.setenv("EVENTFORGE_DATABASE_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:1:x")
    settings = Settings()
    assert settings.database_auth == "secret"
    assert settings.database_secret_arn == "arn:aws:secretsmanager:eu-west-1:1:x"
    assert settings.database_secret_cache_seconds == 300
    monkeypatch.setenv("EVENTFORGE_DATABASE_AUTH", "kerberos")
    with pytest.raises(ValidationError, match="database_auth"):
        Settings()
