"""The embedded AWS emulator, run as a child process on loopback: ministack or moto.

- `ministack` (the default): `eventforge.runtime.ministack_server`, ministack's ASGI app behind
  a layer that adds prompt long polls and SES event publishing. Fast: it keeps up with the
  whole stack under load, and can keep its state across restarts.
- `moto`: `eventforge.runtime.emulator_server`, moto's server with SES event publishing added
  (moto stores SES event destinations but publishes nothing to them). Slower as queues grow.

Both pass the backbone's fidelity suite (the integration tests, `EVENTFORGE_EMULATOR=moto`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

from eventforge.runtime.processes import die_with_parent

LOOPBACK = "127.0.0.1"
EmulatorKind = Literal["ministack", "moto"]
ACCOUNT = "123456789012"
"""The account both emulators act in."""
CREDENTIAL = "testing"
"""The access key id and secret the local clients use (the emulators accept any; ministack checks
presigned URLs against its own, which it is given)."""


@dataclass(frozen=True)
class _Kind:
    """How to run one emulator and reach its own (non-AWS) endpoints."""

    module: str
    ready_path: str
    reset_path: str
    keeps_state: bool


_KINDS: dict[str, _Kind] = {
    "ministack": _Kind(
        "eventforge.runtime.ministack_server", "/_ministack/health", "/_ministack/reset", True
    ),
    "moto": _Kind("eventforge.runtime.emulator_server", "/moto-api/", "/moto-api/reset", False),
}


@dataclass(frozen=True)
class SentEmail:
    """An email the emulator's SES accepted."""

    id: str
    source: str
    to: list[str]
    subject: str
    body: str


def _moto_recipients(destinations: dict[str, list[str]] | list[str]) -> list[str]:
    """A moto message's recipients: a `Destination` of SendEmail, or SendRawEmail's list."""
    if isinstance(destinations, list):
        return destinations
    return list(destinations.get("ToAddresses", []))


class EmulatorError(RuntimeError):
    """The emulator could not be started or reached."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class Emulator:
    """An emulator subprocess: start, wait until it answers, reset, pause and stop."""

    def __init__(
        self,
        port: int,
        *,
        kind: EmulatorKind = "ministack",
        host: str = LOOPBACK,
        log_path: Path | None = None,
        start_timeout: float = 30.0,
        state_dir: Path | None = None,
    ) -> None:
        """`state_dir`: keep the emulator's state there across restarts (ministack only)."""
        self.kind = kind
        self._kind = _KINDS[kind]
        self.state_dir = state_dir if self._kind.keeps_state else None
        self.host = host
        self.port = port
        self.log_path = log_path
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._paused = False
        # Loopback must never go through a proxy configured in the environment.
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def url(self) -> str:
        """The endpoint URL to give boto3."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server process's id, once launched."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the process has been started and has not exited."""
        return self._process is not None and self._process.poll() is None

    @property
    def paused(self) -> bool:
        """Whether the process is stopped by `pause`."""
        return self._paused

    def start(self) -> None:
        """Launch the server and return once it answers; raise EmulatorError otherwise."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Launch the server without waiting for it (`wait_ready` does), to overlap its start."""
        if self._process is not None:
            raise EmulatorError("emulator already started")
        if _port_in_use(self.host, self.port):
            raise EmulatorError(f"{self.host}:{self.port} is already in use")
        output = self._open_log()
        command = [sys.executable, "-m", self._kind.module, "-H", self.host, "-p", str(self.port)]
        if self.state_dir is not None:
            command += ["--state-dir", str(self.state_dir)]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in our terminal reaches us, and we decide when it stops.
            start_new_session=True,
            preexec_fn=die_with_parent(),  # a prctl call: async-signal-safe
        )

    def wait_ready(self) -> None:
        """Return once the launched server answers; stop it and raise EmulatorError otherwise."""
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = 5.0) -> None:
        """Terminate the server, killing it if it outlives `grace` seconds; idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            self._signal(process, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self._signal(process, signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal(process, signal.SIGKILL)
                process.wait()
        self._paused = False
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def keeps_state(self) -> bool:
        """Whether what it holds outlives a restart (it was started with a state directory)."""
        return self.state_dir is not None

    def reset(self) -> None:
        """Drop every resource the emulator holds (all services, all regions)."""
        self._request("POST", self._kind.reset_path, timeout=10.0)

    def sent_emails(self) -> list[SentEmail]:
        """Every email its SES accepted, oldest first."""
        if self.kind == "moto":
            data = json.loads(self._request("GET", "/moto-api/data.json", timeout=30.0))
            return [
                SentEmail(
                    id=m["id"],
                    source=m.get("source", ""),
                    to=_moto_recipients(m["destinations"]),
                    subject=m.get("subject", ""),
                    body=m.get("body", "") or m.get("raw_data", ""),
                )
                for m in data.get("ses", {}).get("Message", [])
            ]
        query = f"?account={ACCOUNT}"
        data = json.loads(self._request("GET", f"/_ministack/ses/messages{query}", timeout=30.0))
        return [
            SentEmail(
                id=m["MessageId"],
                source=m.get("Source", ""),
                to=list(m.get("To") or []),
                subject=m.get("Subject") or "",
                body=(m.get("BodyText") or "") + (m.get("BodyHtml") or ""),
            )
            for messages in data.get("messages", {}).values()
            for m in messages
        ]

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): calls hang until `resume`, state is kept."""
        self._signal(self._require_process(), signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Continue a paused server (SIGCONT)."""
        self._signal(self._require_process(), signal.SIGCONT)
        self._paused = False

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _open_log(self) -> IO[bytes] | int:
        if self.log_path is None:
            return subprocess.DEVNULL
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        return self._log

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        process = self._require_process()
        while True:
            if process.poll() is not None:
                raise EmulatorError(
                    f"emulator exited with {process.returncode} (log: {self.log_path or 'none'})"
                )
            try:
                self._request("GET", self._kind.ready_path, timeout=1.0)
            except (OSError, EmulatorError):
                if time.monotonic() > deadline:
                    raise EmulatorError(
                        f"emulator not answering on {self.url} after {self.start_timeout} s"
                    ) from None
                time.sleep(0.1)
            else:
                return

    def _request(self, method: str, path: str, *, timeout: float) -> bytes:
        request = urllib.request.Request(self.url + path, method=method)  # noqa: S310 (http only)
        try:
            with self._http.open(request, timeout=timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as error:
            raise EmulatorError(f"{method} {path} answered {error.code}") from error

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise EmulatorError("emulator not started")
        return self._process

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
        # The server leads its own process group; signal the group so no child is left behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
