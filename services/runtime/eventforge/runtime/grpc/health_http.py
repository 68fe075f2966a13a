"""`GET /healthz` over plain HTTP, mirroring a gRPC server's overall health status.

Load balancer target groups cannot speak gRPC health checks (and the gRPC port speaks mTLS),
and a container health check that starts Python costs a noticeable share of a small task's
CPU; a plain HTTP endpoint serves both, and bash can probe it (`probe_command`).
"""

from __future__ import annotations

import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

log = logging.getLogger("eventforge.grpc")

HEALTH_PATH = "/healthz"
PROBE_READ_SECONDS = 3


class HealthStatus:
    """Whether the server as a whole (gRPC health service "") is SERVING.

    Like grpc's `HealthServicer`, it stays NOT_SERVING once `shutdown` was called, so a
    dependency probe finishing late cannot report a stopping server as healthy again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._serving = False
        self._shut_down = False

    @property
    def serving(self) -> bool:
        """True while the server reports SERVING."""
        return self._serving

    def set(self, serving: bool) -> None:
        """Report SERVING or NOT_SERVING (ignored after `shutdown`)."""
        with self._lock:
            if not self._shut_down:
                self._serving = serving

    def shutdown(self) -> None:
        """Report NOT_SERVING from now on: the server is stopping."""
        with self._lock:
            self._shut_down = True
            self._serving = False


class _Handler(BaseHTTPRequestHandler):
    """Answers `GET /healthz` from the server's `HealthStatus`; every other path is 404."""

    # A client that connects and sends nothing must not hold a thread for ever.
    timeout = 5

    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, _HealthServer)
        if urlsplit(self.path).path != HEALTH_PATH:
            self._answer(HTTPStatus.NOT_FOUND, "NOT_FOUND")
        elif server.status.serving:
            self._answer(HTTPStatus.OK, "SERVING")
        else:
            self._answer(HTTPStatus.SERVICE_UNAVAILABLE, "NOT_SERVING")

    def _answer(self, status: HTTPStatus, text: str) -> None:
        body = f"{text}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # Probes arrive every few seconds from ECS and the load balancer: logging them is noise.
        return


class _HealthServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], status: HealthStatus) -> None:
        self.status = status
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # A prober that hangs up early is no reason for a traceback on stderr.
        log.debug("health request from %s failed", client_address, exc_info=True)


class HealthHttpServer:
    """A running `GET /healthz` endpoint, served from a background thread."""

    def __init__(self, address: str, status: HealthStatus) -> None:
        """Listen on `address` (IPv4 or name, "host:port"; port 0: any free port) and serve."""
        host, _, port = address.rpartition(":")
        self._server = _HealthServer((host, int(port)), status)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def probe_command(port: int) -> list[str]:
    """The container health check: bash GETs /healthz on 127.0.0.1:`port`, exit 0 only on 200.

    It needs nothing but bash (its /dev/tcp), which python:3.11-slim has and curl it has not;
    the connection is local, so it is accepted or refused at once, and the reply is awaited at
    most PROBE_READ_SECONDS.
    """
    script = (
        f"exec 3<>/dev/tcp/127.0.0.1/{port} || exit 1; "
        f"printf 'GET {HEALTH_PATH} HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n' >&3 || exit 1; "
        f"read -r -t {PROBE_READ_SECONDS} status <&3 || exit 1; "
        '[[ "$status" == "HTTP/1."?" 200 "* ]]'
    )
    return ["CMD", "bash", "-c", script]
