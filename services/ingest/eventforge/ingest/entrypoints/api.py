"""The ingest HTTP API process (`eventforge serve ingest api`): uvicorn on INGEST_ADDR."""

from __future__ import annotations

import threading

from eventforge.ingest.bootstrap import bootstrap, inbound
from eventforge.ingest.entrypoints.app import create_app
from eventforge.runtime.asgi import serve_asgi
from eventforge.runtime.settings import Settings


def main(settings: Settings, stop: threading.Event) -> None:
    """Serve the webhooks until told to stop; refuses to start without fit secrets."""
    app = create_app(bootstrap(settings), inbound(settings))
    serve_asgi(app, settings.ingest_addr, stop, grace=settings.grpc_grace_seconds)
