"""What every Lambda function of EventForge does once per execution environment.

An environment is built on its first invocation and reused for hours: the function reads the
secrets its environment names into the variables the settings read (`secrets`), then the
settings, then configures logging and telemetry for its service — once. `PerEnvironment` holds
what a handler builds that way.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, MutableMapping
from typing import Generic, TypeVar

from eventforge.runtime.logs import configure_logging
from eventforge.runtime.secrets import load_named_secrets
from eventforge.runtime.settings import ServiceName, Settings
from eventforge.runtime.telemetry import Telemetry, configure_telemetry

T = TypeVar("T")


def start_environment(
    service: ServiceName, environ: MutableMapping[str, str] = os.environ
) -> tuple[Settings, Telemetry]:
    """The secrets into `environ`, then the settings, logging and telemetry of `service`."""
    load_named_secrets(environ)
    settings = Settings()
    configure_logging(service, settings.log_level)
    return settings, configure_telemetry(service, settings)


class PerEnvironment(Generic[T]):
    """One `T` per execution environment, built by `start` on first use (concurrent first
    invocations build it once)."""

    def __init__(self, start: Callable[[], T]) -> None:
        self._start = start
        self._lock = threading.Lock()
        self._value: T | None = None

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._start()
            return self._value
