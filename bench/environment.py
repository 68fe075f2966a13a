"""The benchmark run's workspace (`harness.workspace`) and its in-process benchmarks' settings.

EVENTFORGE_BENCH_POSTGRES names another administrative PostgreSQL URL.
"""

from __future__ import annotations

from eventforge.runtime.settings import Settings
from harness.workspace import REGION, Workspace, admin_url

ADMIN_URL = admin_url("EVENTFORGE_BENCH_POSTGRES")
BENCH_PREFIX = "bench"


def in_process_settings(ws: Workspace) -> Settings:
    """For the benchmarks that run in this process: the run's emulator and database."""
    return Settings(
        database_url=ws.database_url,
        aws_endpoint_url=ws.emulator.url,
        aws_region=REGION,
        name_prefix=BENCH_PREFIX,
        data_dir=ws.root / "inprocess",
        emulator_port=ws.emulator.port,
    )
