"""`eventforge up`: the whole system on one machine, on embedded defaults."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

import click
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from eventforge.cli.local_stack import (
    RecordedProcess,
    StackState,
    port_free,
    refuse_busy_ports,
    refuse_to_start_over,
)
from eventforge.cli.stack import roles_of
from eventforge.cli.supervisor import Supervisor, child_environment, python_command
from eventforge.runtime.emulator import CREDENTIAL, LOOPBACK, Emulator
from eventforge.runtime.grpc.health_http import HEALTH_PATH
from eventforge.runtime.grpc.tls import Identity
from eventforge.runtime.settings import (
    ALL_SERVICES,
    SERVICES,
    ServiceName,
    Settings,
    split_address,
)

LOCAL_WAIT_SECONDS = 2
LOCAL_METRIC_EXPORT_MILLIS = 10_000
"""How often the processes export metrics to the dashboard (the SDK's default is 60 s)."""
BACKGROUND_NICENESS = 10
"""Added to the nice value of the worker, relay and scheduler processes: the APIs come first."""
_OTLP_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")


def health_channel(settings: Settings, service: ServiceName, address: str) -> grpc.Channel:
    """A channel for health checks: plain, or mTLS as the operator when TLS_DIR is set."""
    tls = Identity.configured(settings, "operator")
    if tls is None:
        return grpc.insecure_channel(address)
    override = [("grpc.ssl_target_name_override", service)]
    return grpc.secure_channel(address, tls.channel_credentials(), options=override)


def wait_serving(settings: Settings, service: ServiceName, deadline: float) -> bool:
    """Poll a service's health until SERVING or the deadline passes."""
    with health_channel(settings, service, settings.address_of(service)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    return False


def wait_http_serving(address: str, deadline: float) -> bool:
    """Poll an HTTP API's `GET /healthz` until it answers 200 or the deadline passes."""
    url = f"http://{address}{HEALTH_PATH}"  # the stack's own loopback address
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    return False


def wait_api(settings: Settings, service: ServiceName, deadline: float) -> bool:
    """Wait for a service's API: gRPC health, or `GET /healthz` for an HTTP API."""
    if service in SERVICES:
        return wait_serving(settings, service, deadline)
    return wait_http_serving(settings.address_of(service), deadline)


def api_url(service: ServiceName, address: str) -> str:
    """How `up` shows a service's API."""
    return f"{'grpc' if service in SERVICES else 'http'}://{address}"


def run_step(name: str, env: dict[str, str], log_path: Path) -> None:
    """Run a one-off `eventforge` command (migrate, provision) in a child process.

    The children hold SQLAlchemy, alembic and boto3 only while they run, so the supervisor
    itself stays small; raises RuntimeError with the step's output if it fails.
    """
    with log_path.open("wb") as log:
        code = subprocess.call(
            python_command(name), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    if code != 0:
        output = log_path.read_text(errors="replace").strip().splitlines()[-20:]
        raise RuntimeError(f"eventforge {name} failed (exit code {code}):\n" + "\n".join(output))


def dashboard_url(settings: Settings) -> tuple[str | None, str]:
    """The dashboard's URL if `up` can serve it, else None and why not."""
    if not settings.dashboard_url:
        return None, "off (EVENTFORGE_DASHBOARD_ADDR is empty)"
    if not all(importlib.util.find_spec(name) for name in ("fastapi", "uvicorn")):
        return None, "off (needs the `local` dependency group: fastapi, uvicorn)"
    host, port = split_address(settings.dashboard_addr)
    if not port_free(host, port):
        return None, f"off ({settings.dashboard_addr} is in use; set EVENTFORGE_DASHBOARD_ADDR)"
    return settings.dashboard_url, ""


def metrics_environment(url: str) -> dict[str, str]:
    """Point the processes' metrics at the dashboard, unless the user configured an endpoint."""
    if any(os.environ.get(name) for name in _OTLP_ENDPOINTS):
        return {}
    return {
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{url}/v1/metrics",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
        "OTEL_METRIC_EXPORT_INTERVAL": os.environ.get(
            "OTEL_METRIC_EXPORT_INTERVAL", str(LOCAL_METRIC_EXPORT_MILLIS)
        ),
    }


def local_ports(settings: Settings) -> list[tuple[str, str]]:
    """(name, host:port) of everything `up` will listen on (the dashboard checks its own)."""
    ports = (
        [] if settings.aws_endpoint_url else [("emulator", f"{LOOPBACK}:{settings.emulator_port}")]
    )
    return ports + [(service, settings.address_of(service)) for service in ALL_SERVICES]


def record_state(settings: Settings, emulator: Emulator | None, *supervisors: Supervisor) -> None:
    """Write the state file other commands (and the next `up`) read: see `local_stack`."""
    processes = [
        RecordedProcess.of(child.name, child.pid)
        for supervisor in supervisors
        for child in supervisor.children
        if child.pid is not None and child.exited() is None
    ]
    if emulator is not None and emulator.pid is not None:
        processes.insert(0, RecordedProcess.of("emulator", emulator.pid))
    StackState(
        supervisor=RecordedProcess.of("eventforge up", os.getpid()),
        aws_endpoint_url=settings.aws_endpoint_url,
        aws_region=settings.aws_region,
        name_prefix=settings.name_prefix,
        addresses={service: settings.address_of(service) for service in ALL_SERVICES},
        processes=tuple(processes),
    ).write(settings.data_dir)


def forget_earlier_run(settings: Settings, emulator: Emulator) -> str | None:
    """With an emulator that starts empty, start the SQLite databases empty too; what was done.

    Otherwise the services would remember files, receipts and subscriptions the emulator no
    longer has (a receipt link answering 403). A PostgreSQL database is the user's: it is only
    warned about.
    """
    if emulator.keeps_state:
        return None
    if settings.database_url:
        return (
            f"{emulator.kind} starts empty: what the database remembers of earlier runs (files, "
            "receipts) is gone from the emulator; EVENTFORGE_EMULATOR=ministack keeps it"
        )
    earlier = [
        path
        for service in ALL_SERVICES
        for path in settings.data_dir.glob(f"{service}.db*")  # with -wal and -shm
    ]
    if not earlier:
        return None
    for path in earlier:
        path.unlink()
    return (
        f"{emulator.kind} starts empty, so the services' databases of the earlier run were "
        f"removed too ({len(earlier)} files in {settings.data_dir}); "
        "EVENTFORGE_EMULATOR=ministack keeps both"
    )


def run_stack(settings: Settings, timeout: float) -> int:
    """Start everything, wait for SERVING, supervise until SIGINT/SIGTERM; return an exit code.

    Refuses at once (ClickException) if another `up` of the data directory runs or left
    processes behind, or if a port it needs is taken.
    """
    started = time.monotonic()
    refuse_to_start_over(settings.data_dir)
    refuse_busy_ports(local_ports(settings))
    logs_dir = settings.data_dir / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)

    emulator = None
    overrides: dict[str, str] = {}
    if not settings.aws_endpoint_url:
        emulator = Emulator(
            settings.emulator_port,
            kind=settings.emulator,
            log_path=logs_dir / "emulator.log",
            state_dir=settings.data_dir / "emulator",
        )
        # It starts while the databases migrate and the services start; provisioning waits.
        emulator.launch()
        overrides = {"AWS_ENDPOINT_URL": emulator.url}
        overrides.update({k: CREDENTIAL for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
        os.environ.update(overrides)
        settings = Settings()
        kept = f"state in {emulator.state_dir}" if emulator.keeps_state else "starts empty"
        click.echo(f"AWS emulator      {emulator.url}  ({emulator.kind}, {kept})")
        forgotten = forget_earlier_run(settings, emulator)
        if forgotten:
            click.echo(forgotten, err=True)
    # Short long-polls locally, so that Ctrl-C stops the workers within a few seconds.
    overrides.setdefault(
        "EVENTFORGE_WORKER_WAIT_SECONDS",
        os.environ.get("EVENTFORGE_WORKER_WAIT_SECONDS", str(LOCAL_WAIT_SECONDS)),
    )
    # glibc gives every thread that allocates its own malloc arena (up to 8 per core), which
    # a service's dozens of threads turn into idle, resident memory; two are plenty here.
    overrides.setdefault("MALLOC_ARENA_MAX", os.environ.get("MALLOC_ARENA_MAX", "2"))
    dashboard, dashboard_off = dashboard_url(settings)
    if dashboard:
        overrides.update(metrics_environment(dashboard))
    env = child_environment(**overrides)
    supervisor = Supervisor(env)
    # Its own supervisor: a dashboard that keeps failing is reported and left stopped, while
    # the services go on (a service that keeps failing stops everything).
    dashboard_supervisor = Supervisor(env)

    try:
        run_step("migrate", env, logs_dir / "migrate.log")
        click.echo(
            f"database          {settings.database_url or f'SQLite in {settings.data_dir}/'}"
        )
        # Each service's API runs in a process of its own (API_PROCESSES of them, on one port),
        # and its worker and relay together in another at a lower CPU priority: an asyncio API
        # sharing an interpreter with busy worker threads gets a small share of its lock, and
        # the work a burst of calls leaves behind must not slow the calls that follow. A
        # worker that starts before the topology exists waits for its queues; a relay retries.
        for service in ALL_SERVICES:
            log_path = logs_dir / f"{service}.log"
            for n in range(1, settings.api_processes + 1):
                api = python_command("serve", service, "api")
                supervisor.spawn(f"{service}-api" + (f"-{n}" if n > 1 else ""), api, log_path)
            background = [role for role in roles_of(service) if role != "api"]
            supervisor.spawn(
                f"{service}-{'-'.join(background)}",
                python_command("serve", service, *background),
                log_path,
                niceness=BACKGROUND_NICENESS,
            )
        record_state(settings, emulator, supervisor)
        if emulator:
            emulator.wait_ready()
        run_step("provision", env, logs_dir / "provision.log")
        click.echo(f"topology          provisioned (prefix {settings.name_prefix!r})")
        # One scheduler for the whole stack, like EventBridge Scheduler in the cloud: a tick is
        # one message, whatever the number of workers.
        supervisor.spawn(
            "scheduler",
            python_command("scheduler"),
            logs_dir / "scheduler.log",
            niceness=BACKGROUND_NICENESS,
        )
        record_state(settings, emulator, supervisor)
        click.echo("scheduler         started (`eventforge jobs` lists the jobs)")
        deadline = time.monotonic() + timeout
        for service in ALL_SERVICES:
            address = settings.address_of(service)
            while not wait_api(settings, service, min(deadline, time.monotonic() + 1)):
                for event in supervisor.check():
                    click.echo(event, err=True)
                if time.monotonic() > deadline or stop.is_set():
                    click.echo(f"{service} did not become SERVING on {address}", err=True)
                    return 1
            click.echo(f"{service:<17} {api_url(service, address)}  SERVING")
        niceness = f"nice +{BACKGROUND_NICENESS}"
        click.echo(f"workers, relays   started (a process per service, {niceness})")
        if dashboard:
            # Started once the services serve: its imports stay off their start-up's CPU.
            dashboard_supervisor.spawn(
                "dashboard", python_command("dashboard"), logs_dir / "dashboard.log"
            )
            record_state(settings, emulator, supervisor, dashboard_supervisor)
        click.echo(f"dashboard         {dashboard or dashboard_off}")
        click.echo(f"spans             {settings.spans_path}")
        click.echo(f"logs              {logs_dir}/")
        click.echo(f"ready in {time.monotonic() - started:.1f}s; Ctrl-C stops everything")
        while not stop.wait(1.0):
            restarted = supervisor.check()
            for event in restarted:
                click.echo(event, err=True)
            if restarted:
                record_state(settings, emulator, supervisor, dashboard_supervisor)
            if dashboard_supervisor.children:
                try:
                    for event in dashboard_supervisor.check():
                        click.echo(event, err=True)
                except RuntimeError as error:
                    click.echo(f"{error}\nthe dashboard is stopped; the services go on", err=True)
                    dashboard_supervisor.stop(0)
                    dashboard_supervisor.children.clear()
        return 0
    except RuntimeError as error:  # EmulatorError too
        click.echo(str(error), err=True)
        return 1
    finally:
        click.echo("stopping...")
        wait = int(overrides["EVENTFORGE_WORKER_WAIT_SECONDS"])
        for child in dashboard_supervisor.children:
            child.signal(signal.SIGTERM)  # stops while the services do
        supervisor.stop(max(settings.grpc_grace_seconds, wait) + 3)
        dashboard_supervisor.stop(5)
        if emulator:
            emulator.stop()
        StackState.remove(settings.data_dir)
        click.echo("stopped")
