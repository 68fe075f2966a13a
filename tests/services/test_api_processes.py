"""Each service's API process: health, reflection, database outages and graceful stop."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from sqlalchemy.engine import make_url

from eventforge.runtime.settings import SERVICES, ServiceName, Settings
from tests.fixtures.network import TcpProxy
from tests.fixtures.services import StartService

pytestmark = pytest.mark.integration

API_NAMES = {
    "orders": "eventforge.orders.v1.OrdersService",
    "files": "eventforge.files.v1.FilesService",
    "notifier": "eventforge.notifier.v1.NotifierService",
}
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.mark.parametrize("service", SERVICES)
def test_health_and_reflection(start_service: StartService, service: ServiceName) -> None:
    running = start_service(service)
    running.wait_serving()
    assert running.health(API_NAMES[service]) == SERVING
    with grpc.insecure_channel(running.address) as channel:
        listed = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert listed == {
        API_NAMES[service],
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


def test_not_serving_while_the_database_is_unreachable(
    start_service: StartService, stack_settings: Settings, tcp_proxy: type[TcpProxy]
) -> None:
    url = make_url(stack_settings.database_url or "")
    proxy = tcp_proxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    running = start_service(
        "orders", settings=stack_settings.model_copy(update={"database_url": proxied})
    )
    running.wait_serving()
    proxy.cut()
    _eventually(lambda: running.health(API_NAMES["orders"]) == NOT_SERVING)
    proxy.start()
    _eventually(lambda: running.health(API_NAMES["orders"]) == SERVING)


def test_sigterm_reports_not_serving_then_exits_cleanly(start_service: StartService) -> None:
    running = start_service("notifier")
    running.wait_serving()
    with grpc.insecure_channel(running.address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=API_NAMES["notifier"]), timeout=15
        )
        assert next(watch).status == SERVING
        started = time.monotonic()
        assert running.stop() == 0 or running.process.returncode == 0
        statuses = [reply.status for reply in _drain(watch)]
    assert NOT_SERVING in statuses
    assert time.monotonic() - started < 10
    assert '"stopped"' in running.log() or "stopped" in running.log()


def _drain(stream: grpc.Call) -> list[health_pb2.HealthCheckResponse]:
    replies = []
    try:
        for reply in stream:  # type: ignore[attr-defined]
            replies.append(reply)
    except grpc.RpcError:
        pass
    return replies


def _eventually(condition: object, timeout: float = 15.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except grpc.RpcError:
            pass
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)
