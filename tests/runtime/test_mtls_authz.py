"""mTLS between services, per-method authorization by certificate identity, and deadlines."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from eventforge.orders.v1 import orders_pb2, orders_pb2_grpc
from eventforge.runtime.certs import create_ca, issue
from eventforge.runtime.grpc.authz import CLIENTS, POLICY, allowed
from eventforge.runtime.grpc.client import channel
from eventforge.runtime.grpc.server import ServiceServer, start_server
from eventforge.runtime.grpc.tls import Identity
from eventforge.runtime.settings import SERVICES, Settings
from eventforge.trace_edges import EDGES
from tests.runtime.test_grpc_runtime import SERVICE, ScriptedOrders

pytestmark = pytest.mark.security


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    for name in (*SERVICES, "operator"):
        issue(directory, name)
    return directory


@pytest.fixture
def tls_server(certs: Path) -> Iterator[tuple[ServiceServer, ScriptedOrders]]:
    servicer = ScriptedOrders()  # type: ignore[abstract]  # only GetOrder is scripted
    running = start_server(
        Settings(tls_dir=certs, grpc_max_workers=1),
        "127.0.0.1:0",
        lambda s: orders_pb2_grpc.add_OrdersServiceServicer_to_server(servicer, s),
        [SERVICE],
        identity="orders",
    )
    yield running, servicer
    running.stop(0)


def _get(ch: grpc.Channel, order_id: str = "o-1", timeout: float = 5) -> orders_pb2.Order:
    stub = orders_pb2_grpc.OrdersServiceStub(ch)
    return stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), timeout=timeout).order


def _as(certs: Path, identity: str, port: int) -> grpc.Channel:
    return channel(Settings(tls_dir=certs), f"127.0.0.1:{port}", SERVICE, identity=identity)


def test_allowed_identities_are_served(
    certs: Path, tls_server: tuple[ServiceServer, ScriptedOrders]
) -> None:
    running, _ = tls_server
    for identity in ("operator", "files"):
        assert _get(_as(certs, identity, running.port)).order_id == "o-1"


def test_other_identities_are_permission_denied(
    certs: Path, tls_server: tuple[ServiceServer, ScriptedOrders], caplog: pytest.LogCaptureFixture
) -> None:
    running, servicer = tls_server
    with pytest.raises(grpc.RpcError) as raised:
        _get(_as(certs, "notifier", running.port))
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "notifier may not call" in (raised.value.details() or "")
    assert servicer.calls == 0
    assert any("permission denied" in record.message for record in caplog.records)


def test_a_client_without_a_certificate_is_refused(
    certs: Path, tls_server: tuple[ServiceServer, ScriptedOrders]
) -> None:
    running, servicer = tls_server
    ca = (certs / "ca.pem").read_bytes()
    no_cert = grpc.ssl_channel_credentials(root_certificates=ca)
    options = [("grpc.ssl_target_name_override", "orders")]
    for ch in (
        grpc.secure_channel(f"127.0.0.1:{running.port}", no_cert, options=options),
        grpc.insecure_channel(f"127.0.0.1:{running.port}"),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            _get(ch, timeout=2)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.calls == 0


def test_a_certificate_from_another_ca_is_refused(
    certs: Path, tls_server: tuple[ServiceServer, ScriptedOrders], tmp_path: Path
) -> None:
    running, servicer = tls_server
    create_ca(tmp_path)
    issue(tmp_path, "operator")
    (tmp_path / "ca.pem").write_bytes((certs / "ca.pem").read_bytes())  # trusts the server
    with pytest.raises(grpc.RpcError) as raised:
        _get(_as(tmp_path, "operator", running.port), timeout=2)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.calls == 0


def test_every_declared_grpc_hop_is_authorized_and_nothing_else() -> None:
    clients = frozenset({"operator"})
    for edge in (e for e in EDGES if e.kind == "grpc"):
        package = {"OrdersService": "orders", "FilesService": "files"}[edge.via.split("/")[0]]
        method = f"/eventforge.{package}.v1.{edge.via}"
        assert allowed(method, edge.source, clients), edge
    for method, names in POLICY.items():
        assert not allowed(method, None, clients)
        assert not allowed(method, "intruder", clients)
        assert CLIENTS in names, f"{method} is not callable by the API's clients"
    assert not allowed("/eventforge.orders.v1.OrdersService/Unknown", "operator", clients)


def test_work_whose_deadline_passed_is_not_started(
    certs: Path, tls_server: tuple[ServiceServer, ScriptedOrders]
) -> None:
    running, servicer = tls_server  # one worker thread: the second call waits in the queue
    slow = threading.Thread(target=lambda: _get(_as(certs, "operator", running.port), "slow"))
    slow.start()
    time.sleep(0.2)
    with pytest.raises(grpc.RpcError) as raised:
        _get(_as(certs, "operator", running.port), "late", timeout=0.3)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    slow.join()
    time.sleep(0.2)
    assert servicer.calls == 1  # only the slow call ran; the late one was refused unstarted


def _bundle(certs: Path, name: str) -> str:
    """The TLS_BUNDLE a cloud process gets from its secret, made of the same files."""
    return json.dumps(
        {
            "name": name,
            "ca": (certs / "ca.pem").read_text(),
            "cert": (certs / f"{name}.pem").read_text(),
            "key": (certs / f"{name}-key.pem").read_text(),
        }
    )


def test_a_tls_bundle_serves_and_calls_like_a_tls_dir(
    certs: Path, tls_server: tuple[ServiceServer, ScriptedOrders]
) -> None:
    running, _ = tls_server
    files = Settings(tls_bundle=_bundle(certs, "files"))  # type: ignore[arg-type]
    with channel(files, f"127.0.0.1:{running.port}", SERVICE, identity="ignored") as ch:
        assert _get(ch).order_id == "o-1"  # the bundle names its own identity
    notifier = Settings(tls_bundle=_bundle(certs, "notifier"))  # type: ignore[arg-type]
    with (
        channel(notifier, f"127.0.0.1:{running.port}", SERVICE) as ch,
        pytest.raises(grpc.RpcError) as raised,
    ):
        _get(ch)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("document", "message"),
    [("{nope", "not JSON"), ('{"name": "files", "ca": "x"}', "lacks cert, key"), ("[]", "lacks")],
)
def test_a_broken_tls_bundle_is_refused_with_what_is_wrong(document: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Identity.configured(Settings(tls_bundle=document), "files")  # type: ignore[arg-type]
