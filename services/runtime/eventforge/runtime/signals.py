"""Turn SIGTERM and SIGINT into a stop event every long-running process waits on."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger("eventforge")


def stop_on_signals() -> threading.Event:
    """An event set by the first SIGTERM or SIGINT (call from the main thread)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    return stop
