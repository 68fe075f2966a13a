"""The baseline server: bare grpcio, a generic handler that answers every unary call at once.

`python -m bench.noop_server [--workers N]` listens on a free loopback port, prints
`PORT <n>` on stdout once it serves, and runs until SIGTERM/SIGINT. Whatever method is
called, it answers an empty message (the empty byte string, which every protobuf response
type parses), so the load generator's CreateOrder calls measure the cost of gRPC alone: no
interceptors, no tracing, no database.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from concurrent import futures
from typing import Any

import grpc


def _noop(request: bytes, context: grpc.ServicerContext) -> bytes:
    return b""


_HANDLER: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(_noop)


class NoopHandler(grpc.GenericRpcHandler):
    """Every method of every service: the no-op unary handler (raw bytes in and out)."""

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        return _HANDLER


def serve(workers: int, host: str = "127.0.0.1") -> tuple[grpc.Server, int]:
    """A started no-op server on a free port of `host`, and that port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    server.add_generic_rpc_handlers((NoopHandler(),))
    port = server.add_insecure_port(f"{host}:0")
    server.start()
    return server, port


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=16, help="server threads (as orders)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server, port = serve(args.workers)
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    stop.wait()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
