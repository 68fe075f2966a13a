"""Generated requests to every RPC: never UNKNOWN or INTERNAL, clear errors, no partial state."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventforge.files.v1 import files_pb2
from eventforge.notifier.v1 import notifier_pb2
from eventforge.orders.v1 import orders_pb2
from eventforge.runtime.db import create_service_engine
from eventforge.runtime.settings import ServiceName, Settings
from tests.fixtures.services import ProcessGroup
from tests.security.strategies import build, fields_of

pytestmark = [pytest.mark.integration, pytest.mark.security]

MODULES: dict[ServiceName, ModuleType] = {
    "orders": orders_pb2,
    "files": files_pb2,
    "notifier": notifier_pb2,
}
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


def _methods() -> list[tuple[ServiceName, MethodDescriptor]]:
    found = []
    for service, module in MODULES.items():
        for descriptor in module.DESCRIPTOR.services_by_name.values():
            found += [(service, method) for method in descriptor.methods]
    return found


METHODS = _methods()


@pytest.fixture(scope="module")
def channels(module_processes: ProcessGroup) -> Iterator[dict[ServiceName, grpc.Channel]]:
    apis = [module_processes.start(service, "api") for service in MODULES]
    for api in apis:
        api.wait_serving(timeout=90)
    opened = {api.service: grpc.insecure_channel(api.address) for api in apis}
    yield opened
    for ch in opened.values():
        ch.close()


@pytest.fixture(scope="module")
def databases(stack_settings: Settings) -> Iterator[dict[ServiceName, sa.Engine]]:
    engines = {s: create_service_engine(stack_settings, s) for s in ("orders", "files")}
    yield engines  # type: ignore[misc]
    for engine in engines.values():
        engine.dispose()


def _call(ch: grpc.Channel, method: MethodDescriptor, request: Message) -> grpc.StatusCode:
    module = MODULES[method.containing_service.file.package.split(".")[1]]  # type: ignore[index]
    reply_class = getattr(module, method.output_type.name)
    rpc: grpc.UnaryUnaryMultiCallable[Message, Message] = ch.unary_unary(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=reply_class.FromString,
    )
    failure: grpc.RpcError | None = None
    try:
        rpc(request, timeout=10)
    except grpc.RpcError as error:
        failure = error
    if failure is None:
        return grpc.StatusCode.OK
    code: grpc.StatusCode = failure.code()
    assert code not in FORBIDDEN, f"{method.name}: {code} {failure.details()}"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        _assert_field_violations(failure, method)
    return code


def _assert_field_violations(error: grpc.RpcError, method: MethodDescriptor) -> None:
    status = rpc_status.from_call(error)
    assert status is not None, f"{method.name}: INVALID_ARGUMENT without details"
    bad_request = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad_request) for detail in status.details)
    assert bad_request.field_violations, f"{method.name}: no field violation"
    assert all(v.field and v.description for v in bad_request.field_violations)


def _rows(engine: sa.Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[m.full_name for _, m in METHODS])
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_request_gets_a_clear_answer(
    channels: dict[ServiceName, grpc.Channel],
    databases: dict[ServiceName, sa.Engine],
    service: ServiceName,
    method: MethodDescriptor,
    data: st.DataObject,
) -> None:
    request_class: Any = getattr(MODULES[service], method.input_type.name)
    values = data.draw(fields_of(method.input_type), label="fields")
    request = build(request_class, values)
    watched = {"CreateOrder": ("orders", "orders"), "CreateUpload": ("files", "files")}
    before = None
    if method.name in watched:
        db, table = watched[method.name]
        before = _rows(databases[db], table)  # type: ignore[index]
    code = _call(channels[service], method, request)
    if before is not None and code != grpc.StatusCode.OK:
        db, table = watched[method.name]
        assert _rows(databases[db], table) == before, "a refused request left state behind"  # type: ignore[index]


def test_oversized_messages_are_refused_cleanly(channels: dict[ServiceName, grpc.Channel]) -> None:
    [create] = [m for s, m in METHODS if m.name == "CreateOrder"]
    huge = orders_pb2.CreateOrderRequest(customer_id="x" * (5 * 1024 * 1024))
    assert _call(channels["orders"], create, huge) == grpc.StatusCode.RESOURCE_EXHAUSTED
