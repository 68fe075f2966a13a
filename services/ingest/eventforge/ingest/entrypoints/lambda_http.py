"""The ingest HTTP API as a Lambda function behind an API Gateway HTTP API (payload v2).

Handler: `eventforge.ingest.entrypoints.lambda_http.handler`. The same Starlette app as
`serve ingest api`, through Mangum. Built on the first invocation of an execution environment
and reused: the sources' secrets are read once, from the Secrets Manager secret
EVENTFORGE_INGEST_SECRETS_ARN names (JSON `{"<source>": "<secret>"}`), before the settings;
without them the function refuses to start. The database is the usual DATABASE_URL (and
DATABASE_AUTH); the function only writes ingest's outbox, which ingest's relay publishes.
Each invocation's spans are exported before it returns (the environment freezes after).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from mangum import Mangum

from eventforge.ingest.bootstrap import bootstrap, inbound
from eventforge.ingest.entrypoints.app import create_app
from eventforge.runtime.lambda_environment import PerEnvironment, start_environment
from eventforge.runtime.telemetry import Telemetry

log = logging.getLogger("eventforge.lambda")

LAMBDA_POOL_SIZE = 1
"""Connections per execution environment: Lambda hands it one request at a time."""


@dataclass
class LambdaHttp:
    """One execution environment's API: the app behind Mangum, and its telemetry."""

    adapter: Mangum
    telemetry: Telemetry

    @classmethod
    def start(cls, environ: MutableMapping[str, str] = os.environ) -> LambdaHttp:
        """Read the secrets, then the settings; build the app."""
        settings, telemetry = start_environment("ingest", environ)
        app = create_app(bootstrap(settings, api_pool_size=LAMBDA_POOL_SIZE), inbound(settings))
        # No lifespan: Mangum would run it around every invocation (the engine outlives them).
        adapter = Mangum(app, lifespan="off")
        log.info("lambda http api of ingest ready")
        return cls(adapter, telemetry)

    def handle(self, event: Mapping[str, Any], context: object) -> dict[str, Any]:
        """Answer one API Gateway request; its spans are exported before returning."""
        try:
            return self.adapter(dict(event), context)  # type: ignore[arg-type]
        finally:
            self.telemetry.force_flush()


API = PerEnvironment(LambdaHttp.start)
"""This execution environment's API."""


def handler(event: Mapping[str, Any], context: object) -> dict[str, Any]:
    """The function's handler (`eventforge.ingest.entrypoints.lambda_http.handler`)."""
    return API.get().handle(event, context)
