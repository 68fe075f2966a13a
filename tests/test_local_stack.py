"""`eventforge up` (what `make up` runs) on embedded defaults: everything SERVING, nothing left."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from eventforge.runtime.emulator import free_port
from tests.fixtures.up import UP, marker_of, pids_with, port_variables, running_up, up_environment

pytestmark = pytest.mark.integration


def test_up_serves_every_service_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("orders", "files", "notifier", "emulator")}
    with running_up(tmp_path, port_variables(ports)) as up:
        text = up.output()
        for service in ("orders", "files", "notifier"):
            assert f"127.0.0.1:{ports[service]}  SERVING" in text
            with grpc.insecure_channel(f"127.0.0.1:{ports[service]}") as channel:
                services = ProtoReflectionDescriptorDatabase(channel).get_services()
            assert f"eventforge.{service}.v1.{service.capitalize()}Service" in services
            assert "grpc.health.v1.Health" in services
        assert len(pids_with(up.marker)) >= 5  # up, emulator, three APIs
    assert up.stop_seconds is not None
    assert up.stop_seconds < 10, "Ctrl-C should stop everything within seconds"
    assert up.returncode == 0, up.output()
    assert "stopped" in up.output()
    assert pids_with(up.marker) == {}


def test_api_processes_share_each_service_port(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("orders", "files", "notifier", "emulator")}
    variables = {**port_variables(ports), "EVENTFORGE_API_PROCESSES": "2"}
    with running_up(tmp_path, variables) as up:
        commands = [
            Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in pids_with(up.marker)
        ]
        for service in ("orders", "files", "notifier"):
            serving = [c for c in commands if b"serve" in c and service.encode() in c]
            assert len(serving) == 2, serving  # api worker relay, and one more api
            assert sum(b"worker" in c for c in serving) == 1
            # Calls over separate connections are answered whichever process the kernel picks.
            for _ in range(4):
                options = [("grpc.use_local_subchannel_pool", 1)]
                with grpc.insecure_channel(f"127.0.0.1:{ports[service]}", options) as channel:
                    grpc.channel_ready_future(channel).result(timeout=10)
                    services = ProtoReflectionDescriptorDatabase(channel).get_services()
                assert "grpc.health.v1.Health" in services
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
