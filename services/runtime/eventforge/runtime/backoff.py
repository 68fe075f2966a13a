"""Exponential backoff with full jitter, for loops that wait on a broker or a database."""

from __future__ import annotations

import random


class Backoff:
    """Exponential backoff with full jitter, reset on success."""

    def __init__(self, base: float = 0.5, cap: float = 30.0) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        return random.uniform(0, min(self.cap, self.base * 2**self.failures))  # noqa: S311

    def reset(self) -> None:
        self.failures = 0
