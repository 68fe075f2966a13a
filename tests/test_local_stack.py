"""`eventforge up` (what `make up` runs) on embedded defaults: everything SERVING, nothing left."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import psutil
import pytest
import requests
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from eventforge.cli.local_stack import RecordedProcess, StackState
from eventforge.orders.v1 import orders_pb2, orders_pb2_grpc
from eventforge.runtime.emulator import free_port
from tests.fixtures.ingest import payments_body, payments_headers
from tests.fixtures.orders import order_request
from tests.fixtures.polling import eventually
from tests.fixtures.up import (
    PORT_NAMES,
    UP,
    marker_of,
    pids_with,
    port_variables,
    running_up,
    up_environment,
)

pytestmark = pytest.mark.integration


def test_up_serves_every_service_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    ports = {name: free_port() for name in PORT_NAMES}
    with running_up(tmp_path, port_variables(ports)) as up:
        text = up.output()
        assert "scheduler         started" in text
        for service in ("orders", "files", "notifier"):
            assert f"127.0.0.1:{ports[service]}  SERVING" in text
            with grpc.insecure_channel(f"127.0.0.1:{ports[service]}") as channel:
                services = ProtoReflectionDescriptorDatabase(channel).get_services()
            assert f"eventforge.{service}.v1.{service.capitalize()}Service" in services
            assert "grpc.health.v1.Health" in services
        # ingest answers signed webhooks over HTTP, on the embedded development secrets.
        assert f"ingest            http://127.0.0.1:{ports['ingest']}  SERVING" in text
        body = payments_body()
        answer = requests.post(
            f"http://127.0.0.1:{ports['ingest']}/webhooks/payments",
            data=body,
            headers=payments_headers(body),
            timeout=10,
        )
        assert (answer.status_code, answer.json()["outcome"]) == (202, "recorded"), answer.text
        assert len(pids_with(up.marker)) >= 6  # up, emulator, four APIs
    assert up.stop_seconds is not None
    assert up.stop_seconds < 10, "Ctrl-C should stop everything within seconds"
    assert up.returncode == 0, up.output()
    assert "stopped" in up.output()
    assert pids_with(up.marker) == {}
    assert not (tmp_path / "data" / "stack.json").exists()


def test_api_processes_share_each_service_port(tmp_path: Path) -> None:
    ports = {name: free_port() for name in PORT_NAMES}
    variables = {**port_variables(ports), "EVENTFORGE_API_PROCESSES": "2"}
    with running_up(tmp_path, variables) as up:
        commands = {
            pid: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            for pid in pids_with(up.marker)
        }
        for service in ("orders", "files", "notifier"):
            serving = {
                pid: command
                for pid, command in commands.items()
                if b"serve" in command and service.encode() in command
            }
            apis = [pid for pid, command in serving.items() if b"worker" not in command]
            background = [pid for pid, command in serving.items() if b"worker" in command]
            assert len(apis) == 2, serving
            assert len(background) == 1, serving
            assert b"relay" in serving[background[0]]
            # The APIs come first for the CPU: the worker and relay run at nice +10.
            assert [psutil.Process(pid).nice() for pid in apis] == [0, 0]
            assert psutil.Process(background[0]).nice() == 10
            # Calls over separate connections are answered whichever process the kernel picks.
            for _ in range(4):
                options = [("grpc.use_local_subchannel_pool", 1)]
                with grpc.insecure_channel(f"127.0.0.1:{ports[service]}", options) as channel:
                    grpc.channel_ready_future(channel).result(timeout=10)
                    services = ProtoReflectionDescriptorDatabase(channel).get_services()
                assert "grpc.health.v1.Health" in services
        # One scheduler for the stack, at the workers' priority.
        [scheduler] = [pid for pid, command in commands.items() if b"scheduler" in command]
        assert psutil.Process(scheduler).nice() == 10
    assert up.returncode == 0, up.output()
    assert pids_with(up.marker) == {}


def test_up_reports_a_failed_migration_and_leaves_nothing_running(tmp_path: Path) -> None:
    env = up_environment(
        tmp_path,
        {
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere",
            "EVENTFORGE_EMULATOR_PORT": str(free_port()),
        },
    )
    done = subprocess.run(UP, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "eventforge migrate failed" in done.stderr
    assert "stopped" in done.stdout
    assert (tmp_path / "data" / "logs" / "migrate.log").exists()
    assert pids_with(marker_of(tmp_path)) == {}


def _no_aws_credentials(tmp_path: Path) -> dict[str, str]:
    """Variables that leave boto3 no credentials to find (and no instance metadata to ask)."""
    return {
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _eventforge(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "eventforge.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def _wait_until_gone(marker: str, seconds: float) -> dict[int, dict[str, str]]:
    deadline = time.monotonic() + seconds
    while (left := pids_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_operator_commands_find_the_stack_and_a_killed_up_leaves_nothing(tmp_path: Path) -> None:
    ports = {name: free_port() for name in PORT_NAMES}
    no_credentials = _no_aws_credentials(tmp_path)
    shell = up_environment(tmp_path, no_credentials)  # a second shell: no AWS_ENDPOINT_URL
    nothing_running = _eventforge(shell, "queues")
    assert nothing_running.returncode == 1
    assert "no local stack running in" in nothing_running.stderr
    assert "start the local stack with `make up`" in nothing_running.stderr
    assert "Traceback" not in nothing_running.stderr

    with running_up(tmp_path, {**port_variables(ports), **no_credentials}) as up:
        queues = _eventforge(shell, "queues", "--json")
        assert queues.returncode == 0, queues.stderr
        endpoint = f"http://127.0.0.1:{ports['emulator']}"
        assert f"acting on {endpoint} (the local stack of {tmp_path / 'data'}" in queues.stderr
        assert "account 123456789012, region us-east-1" in queues.stderr
        assert "orders-orders" in queues.stdout
        recorded = StackState.read(tmp_path / "data")
        assert recorded is not None
        assert recorded.supervisor.pid == up.process.pid
        names = {p.name for p in recorded.processes}
        for service in ("orders", "files", "notifier", "ingest"):
            assert {f"{service}-api", f"{service}-worker-relay"} <= names
        assert {"emulator", "scheduler"} <= names
        assert {p.pid for p in recorded.processes} <= set(pids_with(up.marker))
        # A job fired by hand from another shell reaches the stack's worker, which runs it.
        fired = _eventforge(shell, "jobs", "run", "order-recovery")
        assert fired.returncode == 0, fired.stderr
        assert "sent tick" in fired.stdout
        orders_log = tmp_path / "data" / "logs" / "orders.log"
        eventually(lambda: "processed job:order-recovery" in orders_log.read_text(), timeout=30)
        listed = _eventforge(shell, "jobs")
        assert listed.returncode == 0, listed.stderr
        [row] = [line for line in listed.stdout.splitlines() if line.startswith("order-recovery")]
        assert "by hand" in row

        up.process.kill()  # as an OOM kill or a closed terminal would
        up.process.wait(timeout=10)
        left = _wait_until_gone(up.marker, 30)
        assert left == {}, f"processes outlived their killed supervisor: {sorted(left)}"

    again = _eventforge(shell, "queues")
    assert again.returncode == 1, "a dead stack's endpoint must not be used"
    with running_up(tmp_path, port_variables(ports)) as restarted:
        assert "ready in" in restarted.output()
    assert restarted.returncode == 0, restarted.output()


def test_up_refuses_a_taken_port_at_once_and_names_its_holder(tmp_path: Path) -> None:
    ports = {name: free_port() for name in PORT_NAMES}
    with socket.create_server(("127.0.0.1", ports["files"])):
        started = time.monotonic()
        done = _eventforge(up_environment(tmp_path, port_variables(ports)), "up")
        took = time.monotonic() - started
    assert done.returncode == 1
    assert f"files 127.0.0.1:{ports['files']}: in use by pid {os.getpid()}" in done.stderr
    assert "restarted" not in done.stdout + done.stderr
    assert took < 15, f"refusing a taken port took {took:.1f} s"
    assert pids_with(marker_of(tmp_path)) == {}


def test_up_names_the_processes_a_killed_up_left_behind(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = up_environment(
        tmp_path,
        port_variables({n: free_port() for n in PORT_NAMES}),
    )
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead_supervisor = RecordedProcess("eventforge up", gone.pid, time.time() - 60)
    leftover = subprocess.Popen(["sleep", "120"], env=env)
    try:
        StackState(
            supervisor=dead_supervisor,
            aws_endpoint_url="http://127.0.0.1:1",
            aws_region="us-east-1",
            name_prefix="eventforge",
            addresses={},
            processes=(RecordedProcess.of("orders", leftover.pid),),
        ).write(data_dir)
        done = _eventforge(env, "up")
        assert done.returncode == 1
        assert f"orders (pid {leftover.pid})" in done.stderr
        assert f"kill {leftover.pid}" in done.stderr
        assert leftover.poll() is None, "up must not kill what it only recognises"
    finally:
        leftover.send_signal(signal.SIGTERM)
        leftover.wait()
    assert (data_dir / "stack.json").exists()


def _receipt_url(stub: orders_pb2_grpc.OrdersServiceStub, order_id: str) -> str | None:
    try:
        reply = stub.GetReceiptUrl(orders_pb2.GetReceiptUrlRequest(order_id=order_id), timeout=5)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.FAILED_PRECONDITION:  # not rendered yet
            return None
        raise
    return str(reply.url)


@pytest.mark.parametrize("emulator", ["ministack", "moto"])
def test_a_restart_keeps_emulator_and_databases_in_step(tmp_path: Path, emulator: str) -> None:
    """ministack keeps its state in the data directory, as the services keep theirs: a receipt
    link works after a restart. moto starts empty, so the SQLite databases start empty too,
    with a message, instead of pointing at files that are gone."""
    ports = {name: free_port() for name in PORT_NAMES}
    variables = {**port_variables(ports), "EVENTFORGE_EMULATOR": emulator}
    orders_address = f"127.0.0.1:{ports['orders']}"
    with running_up(tmp_path, variables) as first:
        kept = f"state in {tmp_path / 'data' / 'emulator'}"
        assert (kept in first.output()) == (emulator == "ministack"), first.output()
        with grpc.insecure_channel(orders_address) as channel:
            stub = orders_pb2_grpc.OrdersServiceStub(channel)
            request = order_request(
                "restart-1", customer_id="restart", customer_email="restart@example.com"
            )
            order_id = stub.CreateOrder(request, timeout=10).order.order_id
            url = eventually(lambda: _receipt_url(stub, order_id), 60, "the receipt")
        assert requests.get(url, timeout=10).status_code == 200
    assert first.returncode == 0, first.output()

    with (
        running_up(tmp_path, variables) as second,
        grpc.insecure_channel(orders_address) as channel,
    ):
        stub = orders_pb2_grpc.OrdersServiceStub(channel)
        if emulator == "moto":
            assert "the services' databases of the earlier run were removed" in second.output()
            with pytest.raises(grpc.RpcError) as forgotten:
                stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), timeout=5)
            assert forgotten.value.code() == grpc.StatusCode.NOT_FOUND
            return
        again = _receipt_url(stub, order_id)
        assert again is not None
        answer = requests.get(again, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.content.startswith(b"%PDF")
