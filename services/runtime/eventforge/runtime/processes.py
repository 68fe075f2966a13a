"""Child processes that do not outlive the process that started them."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal the calling process gets when its parent thread exits."""


def die_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen`: the child gets `signum` when its parent dies.

    The local stack runs each child in its own session (a Ctrl-C reaches only the supervisor,
    which then stops the children in order), so nothing else ends them if the supervisor is
    killed hard (SIGKILL, an OOM kill, a closed terminal): without this they would keep
    running, holding the ports. Linux only (prctl's PR_SET_PDEATHSIG, kept across exec);
    elsewhere None, and `eventforge up` finds such leftovers through its state file instead.

    The signal follows the *thread* that started the child: start children from a thread
    that lives as long as the supervisor (the main thread).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the call took effect
            os.kill(os.getpid(), signum)

    return preexec
