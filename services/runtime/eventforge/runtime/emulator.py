"""The embedded AWS emulator: moto in server mode, run as a child process on loopback.

The child runs `eventforge.runtime.emulator_server`: moto's server with SES event publishing
added (moto stores SES event destinations but publishes nothing to them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

from eventforge.runtime.processes import die_with_parent

LOOPBACK = "127.0.0.1"
SERVER_MODULE = "eventforge.runtime.emulator_server"
"""The module the child runs: moto.server's command line, with SES event publishing."""


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
    """A moto server subprocess: start, wait until it answers, reset, pause and stop."""

    def __init__(
        self,
        port: int,
        *,
        host: str = LOOPBACK,
        log_path: Path | None = None,
        start_timeout: float = 30.0,
    ) -> None:
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
        self._process = subprocess.Popen(
            [sys.executable, "-m", SERVER_MODULE, "-H", self.host, "-p", str(self.port)],
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

    def reset(self) -> None:
        """Drop every resource the emulator holds (all services, all regions)."""
        self._request("POST", "/moto-api/reset", timeout=10.0)

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
                self._request("GET", "/moto-api/", timeout=1.0)
            except (OSError, EmulatorError):
                if time.monotonic() > deadline:
                    raise EmulatorError(
                        f"emulator not answering on {self.url} after {self.start_timeout} s"
                    ) from None
                time.sleep(0.1)
            else:
                return

    def _request(self, method: str, path: str, *, timeout: float) -> None:
        request = urllib.request.Request(self.url + path, method=method)  # noqa: S310 (http only)
        try:
            with self._http.open(request, timeout=timeout) as response:
                response.read()
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
