"""`eventforge up` serves the dashboard after the services, points their metrics at it, and
stops it with everything else."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from eventforge.runtime.emulator import free_port
from tests.fixtures.up import PORT_NAMES, pids_with, port_variables, running_up

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_up_serves_the_dashboard_and_stops_it(tmp_path: Path) -> None:
    ports = {name: free_port() for name in (*PORT_NAMES, "dash")}
    variables = {
        **port_variables(ports),
        "EVENTFORGE_DASHBOARD_ADDR": f"127.0.0.1:{ports['dash']}",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
    }
    url = f"http://127.0.0.1:{ports['dash']}"
    with running_up(tmp_path, variables) as up:
        text = up.output()
        assert f"dashboard         {url}\n" in text
        # It starts once the services serve: printed after them, before "ready".
        assert text.index("SERVING") < text.index("dashboard ") < text.index("ready in")

        deadline = time.monotonic() + 30
        statuses: set[str] = set()
        while statuses != {"SERVING"}:  # the dashboard answers, and sees every API serving
            try:
                health = httpx.get(f"{url}/api/health", timeout=5)
                statuses = {h["status"] for h in health.json()} if health.is_success else set()
            except httpx.TransportError:
                pass
            logs = tmp_path / "data/logs/dashboard.log"
            assert time.monotonic() < deadline, f"{statuses}\n{logs.read_text()}\n{text}"
            time.sleep(0.2)
        queues = httpx.get(f"{url}/api/queues", timeout=30).json()
        assert queues["error"] is None
        assert any(q["name"] == "orders-orders-dlq" for q in queues["queues"])

        services = [
            environ
            for environ in pids_with(up.marker).values()
            if "EVENTFORGE_WORKER_WAIT_SECONDS" in environ
        ]
        assert services, "no child process of up found"
        for environ in services:
            assert environ["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] == f"{url}/v1/metrics"
            assert environ["OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"] == "http/protobuf"
        expected = {"eventforge-orders", "eventforge-files", "eventforge-notifier"}
        deadline = time.monotonic() + 30
        while True:  # each process exports every second (OTEL_METRIC_EXPORT_INTERVAL)
            metrics = httpx.get(f"{url}/api/metrics", timeout=5).json()
            exporters = {s["service"] for group in metrics for s in group["series"]}
            if expected <= exporters:
                break
            assert time.monotonic() < deadline, f"metrics only from {exporters}"
            time.sleep(0.5)
    assert up.stop_seconds is not None
    assert up.stop_seconds < 15, "Ctrl-C should stop everything within seconds"
    assert up.returncode == 0, up.output()
    assert pids_with(up.marker) == {}
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/api/health", timeout=2)
