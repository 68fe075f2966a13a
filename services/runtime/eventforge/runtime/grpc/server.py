"""Build and run a service's gRPC server: health, reflection, interceptors, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import grpc.aio
import uvloop
from grpc_health.v1 import _async as aio_health
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from eventforge.runtime.grpc.authz import Authorization
from eventforge.runtime.grpc.health_http import HealthHttpServer, HealthStatus
from eventforge.runtime.grpc.interceptor import CallInterceptor
from eventforge.runtime.grpc.tls import Identity
from eventforge.runtime.metrics import Metrics
from eventforge.runtime.settings import Settings

log = logging.getLogger("eventforge.grpc")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

T = TypeVar("T")


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """Message size limits, keepalive and maximum connection age shared by every server."""
    return [
        ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
        ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        # Clients keep a connection for ever otherwise, and never learn of tasks added since.
        ("grpc.max_connection_age_ms", round(settings.grpc_max_connection_age_seconds * 1000)),
        (
            "grpc.max_connection_age_grace_ms",
            round(settings.grpc_max_connection_age_grace_seconds * 1000),
        ),
    ]


@dataclass
class ServiceServer:
    """A started asyncio gRPC server on its own event loop thread, with its health servicer,
    a dependency probe and `/healthz`."""

    server: grpc.aio.Server
    health: aio_health.HealthServicer
    service_names: Sequence[str]
    port: int
    loop: asyncio.AbstractEventLoop
    executor: futures.Executor
    """Runs the servicers' plain methods."""
    probe: Callable[[], bool] | None = None
    probe_seconds: float = 2.0
    status: HealthStatus = field(default_factory=HealthStatus)
    """The overall status again, for the HTTP health endpoint."""
    health_http: HealthHttpServer | None = None
    """The HTTP health endpoint, when HEALTH_HTTP_ADDR is set."""
    _stopping: threading.Event = field(default_factory=threading.Event)

    def _on_loop(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def set_serving(self, serving: bool) -> None:
        """Report every service (and the server as a whole, "") as serving or not."""
        status = SERVING if serving else NOT_SERVING

        async def report() -> None:
            for name in ("", *self.service_names):
                await self.health.set(name, status)

        self._on_loop(report())
        self.status.set(serving)

    def watch_dependencies(self) -> None:
        """Probe dependencies in the background; health follows their reachability."""
        if self.probe is None:
            return
        threading.Thread(target=self._probe_loop, name="health-probe", daemon=True).start()

    def _probe_loop(self) -> None:
        assert self.probe is not None
        healthy: bool | None = None
        while not self._stopping.is_set():
            now_healthy = self.probe()
            if now_healthy != healthy and not self._stopping.is_set():
                log.log(
                    logging.INFO if now_healthy else logging.WARNING,
                    "dependencies %s",
                    "reachable: SERVING" if now_healthy else "unreachable: NOT_SERVING",
                )
                self.set_serving(now_healthy)
                healthy = now_healthy
            self._stopping.wait(self.probe_seconds)

    def stop(self, grace: float) -> None:
        """Report NOT_SERVING, then let in-flight calls finish within `grace` seconds."""
        self._stopping.set()
        self._on_loop(self.health.enter_graceful_shutdown())
        self.status.shutdown()
        self._on_loop(self.server.stop(grace))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.executor.shutdown(wait=False)
        # Only now: load balancers keep seeing 503 (not a refused port) while calls drain.
        if self.health_http is not None:
            self.health_http.stop()


def start_server(
    settings: Settings,
    address: str,
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
    probe: Callable[[], bool] | None = None,
    *,
    identity: str | None = None,
    metrics: Metrics | None = None,
) -> ServiceServer:
    """Start a server on `address` with the service(s) `register` adds, health and reflection.

    The server is grpc.aio on an event loop of its own (uvloop, in a thread): a servicer's
    `async def` methods run on that loop, its plain methods in a pool of GRPC_MAX_WORKERS
    threads. With TLS_DIR or TLS_BUNDLE set the server speaks mTLS as `identity` (the service's
    certificate name), requires client certificates from the same CA and authorizes callers by
    their identity. With HEALTH_HTTP_ADDR set it also serves `GET /healthz` there. Every call is
    logged and timed into `rpc.server.duration` (`metrics`, by default the process's).
    """
    loop = uvloop.new_event_loop()
    threading.Thread(target=loop.run_forever, name="grpc-server", daemon=True).start()
    try:
        server, health_servicer, port, executor = asyncio.run_coroutine_threadsafe(
            _start(settings, address, register, service_names, identity, metrics), loop
        ).result()
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        raise
    running = ServiceServer(
        server,
        health_servicer,
        service_names,
        port,
        loop,
        executor,
        probe,
        settings.health_probe_seconds,
    )
    # Not serving until the first dependency probe says so.
    running.set_serving(probe is None)
    if settings.health_http_addr is not None:
        running.health_http = HealthHttpServer(settings.health_http_addr, running.status)
        log.info("health endpoint on %s", settings.health_http_addr)
    running.watch_dependencies()
    log.info(
        "listening on %s", address, extra={"address": address, "services": list(service_names)}
    )
    return running


async def _start(
    settings: Settings,
    address: str,
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
    identity: str | None,
    metrics: Metrics | None,
) -> tuple[grpc.aio.Server, aio_health.HealthServicer, int, futures.Executor]:
    tls = Identity.configured(settings, identity)
    authorize = None if tls is None else Authorization(settings.api_clients)
    executor = futures.ThreadPoolExecutor(
        max_workers=settings.grpc_max_workers, thread_name_prefix="grpc-handler"
    )
    server = grpc.aio.server(
        interceptors=[CallInterceptor(authorize=authorize, metrics=metrics, executor=executor)],
        options=server_options(settings),
    )
    register(server)
    health_servicer = aio_health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            *service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, tls.server_credentials())
    if port == 0:
        raise RuntimeError(f"cannot listen on {address}")
    await server.start()
    return server, health_servicer, port, executor


def run_until(running: ServiceServer, stop: threading.Event, grace: float) -> None:
    """Block until `stop` is set (SIGTERM or SIGINT in a served process), then stop gracefully."""
    stop.wait()
    running.stop(grace)
    log.info("stopped")


def serve(
    settings: Settings,
    address: str,
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
    probe: Callable[[], bool] | None = None,
    *,
    stop: threading.Event,
    identity: str | None = None,
) -> None:
    """Run a server until `stop` is set: the body of every service's API entrypoint."""
    running = start_server(settings, address, register, service_names, probe, identity=identity)
    run_until(running, stop, settings.grpc_grace_seconds)
