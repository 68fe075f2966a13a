"""The sources' secrets: embedded for the local stack, required and real against AWS."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from eventforge.ingest.bootstrap import LOCAL_SECRETS, SecretsError, inbound
from eventforge.runtime.secrets import load_secrets, secret_variables
from eventforge.runtime.settings import Settings

LOCAL = {"aws_endpoint_url": "http://127.0.0.1:4566"}
REAL = {"payments": "whsec_" + "p" * 32, "acquirer": ["a" * 24, "b" * 24]}


def _settings(secrets: object = None, **fields: object) -> Settings:
    value = None if secrets is None else SecretStr(json.dumps(secrets))
    fields.setdefault("aws_endpoint_url", None)  # real AWS, whatever the environment says
    return Settings(ingest_secrets=value, **fields)  # type: ignore[arg-type]


def test_the_local_stack_signs_with_the_development_secrets() -> None:
    assert inbound(_settings(**LOCAL)).secrets == {k: (v,) for k, v in LOCAL_SECRETS.items()}


def test_against_aws_ingest_refuses_to_start_without_real_secrets() -> None:
    with pytest.raises(SecretsError, match="EVENTFORGE_INGEST_SECRETS_ARN"):
        inbound(_settings())
    with pytest.raises(SecretsError, match="development one"):
        inbound(_settings(LOCAL_SECRETS))
    with pytest.raises(SecretsError, match="shorter than"):
        inbound(_settings({**REAL, "payments": "short"}))
    configured = inbound(_settings(REAL)).secrets
    assert configured == {"payments": (REAL["payments"],), "acquirer": ("a" * 24, "b" * 24)}


@pytest.mark.parametrize(
    "secrets",
    [
        "not json",
        ["a list"],
        {"payments": REAL["payments"]},  # a source without its secret
        {**REAL, "billing": "x" * 20},  # a secret of no declared source
        {**REAL, "acquirer": []},
        {**REAL, "acquirer": [""]},
        {**REAL, "acquirer": 42},
    ],
)
def test_unfit_secrets_are_refused_with_their_format(secrets: object) -> None:
    raw = secrets if isinstance(secrets, str) else json.dumps(secrets)
    with pytest.raises(SecretsError):
        inbound(Settings(ingest_secrets=SecretStr(raw), aws_endpoint_url=None))


def test_a_cloud_process_reads_the_secrets_its_environment_names() -> None:
    assert secret_variables()["EVENTFORGE_INGEST_SECRETS_ARN"] == "EVENTFORGE_INGEST_SECRETS"
    environ = {"EVENTFORGE_INGEST_SECRETS_ARN": "arn:ingest"}
    stored = {"arn:ingest": json.dumps(REAL)}
    assert load_secrets(environ, stored.__getitem__) == ["EVENTFORGE_INGEST_SECRETS"]
    assert json.loads(environ["EVENTFORGE_INGEST_SECRETS"]) == REAL
