"""Clients spread calls over every address of a name; servers age connections out."""

from __future__ import annotations

import socket
import time
from collections import Counter

import grpc
import grpc.aio

from eventforge.runtime.grpc.client import channel
from eventforge.runtime.grpc.server import ServiceServer, start_server
from eventforge.runtime.settings import Settings

SERVICE = "eventforge.test.v1.Whoami"
WHOAMI = f"/{SERVICE}/Whoami"


def _start(settings: Settings, address: str, name: str) -> ServiceServer:
    """A server whose one method answers `<name> <the caller's address and port>`."""

    def whoami(request: bytes, context: grpc.ServicerContext) -> bytes:
        return f"{name} {context.peer()}".encode()

    def register(server: grpc.aio.Server) -> None:
        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(whoami)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Whoami": handler}),)
        )

    return start_server(settings, address, register, [SERVICE])


def _two_hosts() -> tuple[str, str, str]:
    """Two loopback hosts and a target naming both, formatted with `port`.

    `localhost` by DNS when it resolves to two addresses (127.0.0.1 and ::1), as a Cloud Map
    name resolves to one per task; otherwise an explicit ipv4 list, which pick_first would
    equally reduce to its first address.
    """
    infos = socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)
    resolved = sorted({str(info[4][0]) for info in infos})
    if len(resolved) >= 2:
        return resolved[0], resolved[1], "dns:///localhost:{port}"
    return "127.0.0.1", "127.0.0.2", "ipv4:127.0.0.1:{port},127.0.0.2:{port}"


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def test_calls_are_spread_over_every_address_the_target_resolves_to() -> None:
    settings = Settings()
    first_host, second_host, target = _two_hosts()
    first = _start(settings, _address(first_host, 0), "first")
    second = _start(settings, _address(second_host, first.port), "second")
    ch = channel(settings, target.format(port=first.port), SERVICE)
    try:
        whoami: grpc.UnaryUnaryMultiCallable[bytes, bytes] = ch.unary_unary(WHOAMI)
        answers = Counter(whoami(b"", wait_for_ready=True).split()[0] for _ in range(20))
    finally:
        ch.close()
        first.stop(0)
        second.stop(0)
    assert set(answers) == {b"first", b"second"}, answers


def test_connections_past_their_maximum_age_are_replaced_while_calls_succeed() -> None:
    settings = Settings(
        grpc_max_connection_age_seconds=0.5, grpc_max_connection_age_grace_seconds=1
    )
    running = _start(settings, "127.0.0.1:0", "only")
    ch = channel(settings, f"127.0.0.1:{running.port}", SERVICE)
    peers: list[bytes] = []
    try:
        whoami: grpc.UnaryUnaryMultiCallable[bytes, bytes] = ch.unary_unary(WHOAMI)
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            # No retries are configured: a call lost to an aged-out connection would raise.
            peers.append(whoami(b"").split()[1])
            time.sleep(0.05)
    finally:
        ch.close()
        running.stop(0)
    # Each new connection comes from a new client port.
    assert len(set(peers)) >= 2, peers
