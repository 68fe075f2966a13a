"""`eventforge up`: the whole system on one machine, on embedded defaults."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import FrameType

import click
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from eventforge.cli.stack import roles_of
from eventforge.cli.supervisor import Supervisor, child_environment, python_command
from eventforge.runtime.emulator import Emulator
from eventforge.runtime.grpc.tls import Identity
from eventforge.runtime.settings import SERVICES, ServiceName, Settings

LOCAL_WAIT_SECONDS = 2


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


def run_stack(settings: Settings, timeout: float) -> int:
    """Start everything, wait for SERVING, supervise until SIGINT/SIGTERM; return an exit code."""
    started = time.monotonic()
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
        emulator = Emulator(settings.emulator_port, log_path=logs_dir / "emulator.log")
        # It starts while the databases migrate and the services start; provisioning waits.
        emulator.launch()
        overrides = {"AWS_ENDPOINT_URL": emulator.url}
        overrides.update({k: "testing" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
        os.environ.update(overrides)
        settings = Settings()
        click.echo(f"AWS emulator      {emulator.url}")
    # Short long-polls locally, so that Ctrl-C stops the workers within a few seconds.
    overrides.setdefault(
        "EVENTFORGE_WORKER_WAIT_SECONDS",
        os.environ.get("EVENTFORGE_WORKER_WAIT_SECONDS", str(LOCAL_WAIT_SECONDS)),
    )
    # glibc gives every thread that allocates its own malloc arena (up to 8 per core), which
    # a service's dozens of threads turn into idle, resident memory; two are plenty here.
    overrides.setdefault("MALLOC_ARENA_MAX", os.environ.get("MALLOC_ARENA_MAX", "2"))
    env = child_environment(**overrides)
    supervisor = Supervisor(env)

    try:
        run_step("migrate", env, logs_dir / "migrate.log")
        click.echo(
            f"database          {settings.database_url or f'SQLite in {settings.data_dir}/'}"
        )
        # One process per service runs its api, worker and relay: locally the roles need not
        # scale apart, and one interpreter per service instead of one per role saves the
        # memory and start-up time of six. A worker that starts before the topology exists
        # waits for its queues; a relay retries publishing.
        for service in SERVICES:
            supervisor.spawn(
                service,
                python_command("serve", service, *roles_of(service)),
                logs_dir / f"{service}.log",
            )
        if emulator:
            emulator.wait_ready()
        run_step("provision", env, logs_dir / "provision.log")
        click.echo(f"topology          provisioned (prefix {settings.name_prefix!r})")
        deadline = time.monotonic() + timeout
        for service in SERVICES:
            address = settings.address_of(service)
            while not wait_serving(settings, service, min(deadline, time.monotonic() + 1)):
                for event in supervisor.check():
                    click.echo(event, err=True)
                if time.monotonic() > deadline or stop.is_set():
                    click.echo(f"{service} did not become SERVING on {address}", err=True)
                    return 1
            click.echo(f"{service:<17} grpc://{address}  SERVING")
        click.echo("workers, relays   started (in each service's process)")
        click.echo(f"spans             {settings.spans_path}")
        click.echo(f"logs              {logs_dir}/")
        click.echo(f"ready in {time.monotonic() - started:.1f}s; Ctrl-C stops everything")
        while not stop.wait(1.0):
            for event in supervisor.check():
                click.echo(event, err=True)
        return 0
    except RuntimeError as error:  # EmulatorError too
        click.echo(str(error), err=True)
        return 1
    finally:
        click.echo("stopping...")
        wait = int(overrides["EVENTFORGE_WORKER_WAIT_SECONDS"])
        supervisor.stop(max(settings.grpc_grace_seconds, wait) + 3)
        if emulator:
            emulator.stop()
        click.echo("stopped")
