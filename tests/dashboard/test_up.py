"""`eventforge up` serves the dashboard after the services, points their metrics at it, and
stops it with everything else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from eventforge.runtime.emulator import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _pids_with(marker: str) -> dict[int, dict[str, str]]:
    """Processes whose environment holds the marker, with their environments."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in raw:
            pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
            found[int(entry.name)] = {k.decode(): v.decode(errors="replace") for k, _, v in pairs}
    return found


def test_up_serves_the_dashboard_and_stops_it(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("orders", "files", "notifier", "emulator", "dash")}
    marker = f"EVENTFORGE_TEST_MARKER=dash-{tmp_path.name}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "DATABASE_URL", "OTEL_", "EVENTFORGE_"))
    }
    env.update(
        {
            "EVENTFORGE_DATA_DIR": str(tmp_path / "data"),
            "EVENTFORGE_EMULATOR_PORT": str(ports["emulator"]),
            "EVENTFORGE_ORDERS_ADDR": f"127.0.0.1:{ports['orders']}",
            "EVENTFORGE_FILES_ADDR": f"127.0.0.1:{ports['files']}",
            "EVENTFORGE_NOTIFIER_ADDR": f"127.0.0.1:{ports['notifier']}",
            "EVENTFORGE_DASHBOARD_ADDR": f"127.0.0.1:{ports['dash']}",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "EVENTFORGE_TEST_MARKER": f"dash-{tmp_path.name}",
        }
    )
    url = f"http://127.0.0.1:{ports['dash']}"
    output = tmp_path / "up.out"
    with output.open("wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "eventforge.cli", "up"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while "Ctrl-C stops everything" not in output.read_text():
            assert up.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.2)
        text = output.read_text()
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
            for environ in _pids_with(marker).values()
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
    finally:
        stopping = time.monotonic()
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=30)
    assert time.monotonic() - stopping < 15, "Ctrl-C should stop everything within seconds"
    assert code == 0, output.read_text()
    assert _pids_with(marker) == {}
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/api/health", timeout=2)
