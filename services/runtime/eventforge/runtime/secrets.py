"""Secret settings read from Secrets Manager once per process, before the settings are.

A cloud process is told where a secret is, not what it is: for a secret setting
`EVENTFORGE_<NAME>` (a `SecretStr` field of `Settings`), the variable `EVENTFORGE_<NAME>_ARN`
names the Secrets Manager secret whose string becomes its value. The TLS bundle keeps its own
name, `EVENTFORGE_TLS_SECRET_ARN`. A value already in the environment wins (nothing is read).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import get_args

from pydantic import SecretStr

from eventforge.runtime import aws
from eventforge.runtime.settings import Settings

TLS_SECRET_VARIABLE = "EVENTFORGE_TLS_SECRET_ARN"  # noqa: S105 (a variable's name)


def secret_variables() -> dict[str, str]:
    """ARN variable → the variable of the setting its secret fills in, for every secret."""
    found = {TLS_SECRET_VARIABLE: "EVENTFORGE_TLS_BUNDLE"}
    for name, field in Settings.model_fields.items():
        variable = f"EVENTFORGE_{name.upper()}"
        secret = SecretStr in (field.annotation, *get_args(field.annotation))
        if secret and variable not in found.values():
            found[f"{variable}_ARN"] = variable
    return found


def load_secrets(
    environ: MutableMapping[str, str],
    read_secret: Callable[[str], str],
) -> list[str]:
    """Turn the secrets the environment names into the variables the settings read.

    `read_secret` maps a secret ARN to its string; the names of the variables set are returned.
    """
    loaded: list[str] = []
    for arn_variable, variable in secret_variables().items():
        arn = environ.get(arn_variable)
        if arn and variable not in environ:
            environ[variable] = read_secret(arn)
            loaded.append(variable)
    return loaded


def load_named_secrets(environ: MutableMapping[str, str]) -> list[str]:
    """`load_secrets` from Secrets Manager (a client only when a secret is named)."""
    if not any(environ.get(arn_variable) for arn_variable in secret_variables()):
        return []
    client = aws.secretsmanager(Settings())

    def read_secret(arn: str) -> str:
        return client.get_secret_value(SecretId=arn)["SecretString"]

    return load_secrets(environ, read_secret)
