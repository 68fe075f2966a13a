"""`PerEnvironment`: what a function builds once per execution environment."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from eventforge.runtime.lambda_environment import PerEnvironment


def test_concurrent_first_invocations_build_it_once_and_later_ones_reuse_it() -> None:
    built: list[object] = []
    entered = threading.Event()

    def start() -> object:
        entered.set()
        time.sleep(0.05)  # a slow start: the other invocations arrive meanwhile
        built.append(object())
        return built[-1]

    once = PerEnvironment(start)
    with ThreadPoolExecutor(8) as pool:
        values = list(pool.map(lambda _: once.get(), range(8)))
    assert entered.is_set()
    assert len(built) == 1
    assert values == [built[0]] * 8
    assert once.get() is built[0]
