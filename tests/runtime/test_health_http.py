"""`GET /healthz` mirrors the gRPC health of a started server; bash's probe of it exits 0 on 200."""

from __future__ import annotations

import http.client
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import grpc
import grpc.aio
import pytest

from eventforge.runtime.emulator import free_port
from eventforge.runtime.grpc.health_http import (
    PROBE_READ_SECONDS,
    HealthHttpServer,
    HealthStatus,
    probe_command,
)
from eventforge.runtime.grpc.server import start_server
from eventforge.runtime.settings import Settings

SERVICE = "eventforge.test.v1.Blocking"
WAIT = f"/{SERVICE}/Wait"


class Gate:
    """A gRPC method that blocks until released, to hold a graceful stop open."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()

    def wait(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.entered.set()
        self.released.wait(10)
        return request

    def register(self, server: grpc.aio.Server) -> None:
        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
            self.wait
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Wait": handler}),)
        )


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.released.set()


def _get(port: int, path: str = "/healthz") -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode().strip()
    finally:
        connection.close()


def _probe(port: int) -> tuple[int, float]:
    kind, *argv = probe_command(port)
    assert (kind, argv[0]) == ("CMD", "bash")
    started = time.monotonic()
    probe = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    return probe.returncode, time.monotonic() - started


def test_healthz_follows_set_serving_and_graceful_shutdown(
    monkeypatch: pytest.MonkeyPatch, gate: Gate
) -> None:
    monkeypatch.setenv("EVENTFORGE_HEALTH_HTTP_ADDR", "127.0.0.1:0")
    running = start_server(Settings(), "127.0.0.1:0", gate.register, [SERVICE])
    stopping: threading.Thread | None = None
    try:
        assert running.health_http is not None
        port = running.health_http.port
        assert _get(port) == (200, "SERVING")
        assert _get(port, "/healthz?from=nlb") == (200, "SERVING")
        assert _get(port, "/")[0] == 404
        assert _get(port, "/healthz/extra")[0] == 404
        running.set_serving(False)
        assert _get(port) == (503, "NOT_SERVING")
        running.set_serving(True)
        assert _get(port) == (200, "SERVING")

        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            wait: grpc.UnaryUnaryMultiCallable[bytes, bytes] = ch.unary_unary(WAIT)
            call = wait.future(b"x", timeout=10)
            assert gate.entered.wait(5)
            stopping = threading.Thread(target=running.stop, args=(10,))
            stopping.start()
            _eventually(lambda: _get(port)[0] == 503)
            # A dependency probe that finishes late must not make a stopping server healthy.
            running.set_serving(True)
            assert _get(port) == (503, "NOT_SERVING")
            gate.released.set()
            assert call.result() == b"x"
        stopping.join(10)
        assert not stopping.is_alive()
        with pytest.raises(ConnectionRefusedError):
            _get(port)
    finally:
        gate.released.set()
        if stopping is None:
            running.stop(0)


def test_no_health_endpoint_unless_an_address_is_set(
    monkeypatch: pytest.MonkeyPatch, gate: Gate
) -> None:
    monkeypatch.delenv("EVENTFORGE_HEALTH_HTTP_ADDR", raising=False)
    running = start_server(Settings(), "127.0.0.1:0", gate.register, [SERVICE])
    try:
        assert running.health_http is None
    finally:
        running.stop(0)


def test_the_bash_probe_passes_only_while_serving() -> None:
    status = HealthStatus()
    endpoint = HealthHttpServer("127.0.0.1:0", status)
    try:
        assert _probe(endpoint.port)[0] != 0
        status.set(True)
        assert _probe(endpoint.port)[0] == 0
        status.set(False)
        assert _probe(endpoint.port)[0] != 0
    finally:
        endpoint.stop()


def test_the_bash_probe_fails_at_once_when_nothing_listens() -> None:
    code, seconds = _probe(free_port())
    assert code != 0
    assert seconds < 2


def test_the_bash_probe_gives_up_on_an_endpoint_that_never_answers() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        code, seconds = _probe(silent.getsockname()[1])
    assert code != 0
    assert PROBE_READ_SECONDS - 0.5 < seconds < PROBE_READ_SECONDS + 2


def _eventually(condition: object, timeout: float = 3.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
