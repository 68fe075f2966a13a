"""Serving the dashboard with uvicorn: in the foreground (`eventforge dashboard`, the child
process `eventforge up` supervises) or on a background thread (tests, embedding)."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from eventforge.runtime.settings import Settings, split_address


def config(app: Any, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
        # Uvicorn waits this long for open connections (a page's keep-alive) when stopping.
        timeout_graceful_shutdown=3,
    )


def serve(settings: Settings) -> None:
    """Serve the dashboard on DASHBOARD_ADDR until SIGINT/SIGTERM."""
    from eventforge.dashboard.app import create_app

    host, port = split_address(settings.dashboard_addr)
    uvicorn.Server(config(create_app(settings), host, port)).run()


class BackgroundServer:
    """The dashboard served by uvicorn on a thread of this process."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._server = uvicorn.Server(config(app, host, port))
        self._thread = threading.Thread(target=self._server.run, name="dashboard", daemon=True)

    @property
    def url(self) -> str:
        return (
            f"http://[{self.host}]:{self.port}"
            if ":" in self.host
            else f"http://{self.host}:{self.port}"
        )

    def start(self, timeout: float = 15.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the dashboard did not start on {self.host}:{self.port}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start within {timeout} s")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
