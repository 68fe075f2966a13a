"""`retry_while_unavailable`: recording what already happened outlasts a database blip."""

from __future__ import annotations

import pytest
from sqlalchemy import exc

from eventforge.runtime.db import retry_while_unavailable


def _outage() -> exc.OperationalError:
    return exc.OperationalError("COMMIT", {}, Exception("server closed the connection"))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_retries_while_the_database_is_unavailable_then_returns() -> None:
    clock, calls = Clock(), []

    def work() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise _outage()
        return "recorded"

    result = retry_while_unavailable(work, what="x", sleep=clock.sleep, clock=lambda: clock.now)
    assert result == "recorded"
    assert len(calls) == 4
    assert clock.slept == [0.2, 0.4, 0.8]


def test_gives_up_after_the_limit_with_the_last_error() -> None:
    clock = Clock()

    def work() -> None:
        raise _outage()

    with pytest.raises(exc.OperationalError):
        retry_while_unavailable(
            work, what="x", give_up_after=10, sleep=clock.sleep, clock=lambda: clock.now
        )
    assert sum(clock.slept) <= 10
    assert len(clock.slept) >= 4


def test_other_errors_are_not_retried() -> None:
    clock, calls = Clock(), []

    def work() -> None:
        calls.append(1)
        raise exc.IntegrityError("INSERT", {}, Exception("duplicate key"))

    with pytest.raises(exc.IntegrityError):
        retry_while_unavailable(work, what="x", sleep=clock.sleep, clock=lambda: clock.now)
    assert calls == [1]
    assert clock.slept == []
