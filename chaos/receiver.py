"""A local webhook endpoint that logs every delivery it acknowledged.

It answers 2xx to most POSTs and 503 to a few (chosen at random), so the notifier's retries are
exercised; only acknowledged (2xx) deliveries count as received.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from eventforge.runtime.emulator import free_port

PATH = "/hook"


@dataclass(frozen=True)
class Received:
    event_id: str
    event_type: str
    delivery_id: str
    path: str


class WebhookReceiver:
    """`start()` serves on 127.0.0.1:port in a thread; `received` lists acknowledged POSTs."""

    def __init__(self, *, failure_rate: float = 0.05, seed: int | None = None) -> None:
        self.port = free_port()
        self.failure_rate = failure_rate
        self.received: list[Received] = []
        self.refused = 0
        self._rng = random.Random(seed)  # noqa: S311 (test traffic, not secrets)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                ok = receiver._record(
                    self.path,
                    self.headers.get("EventForge-Event-Id", ""),
                    self.headers.get("EventForge-Event-Type", ""),
                    self.headers.get("EventForge-Delivery-Id", ""),
                )
                self.send_response(204 if ok else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        ).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def _record(self, path: str, event_id: str, event_type: str, delivery_id: str) -> bool:
        with self._lock:
            if self._rng.random() < self.failure_rate:
                self.refused += 1
                return False
            self.received.append(Received(event_id, event_type, delivery_id, path))
            return True
