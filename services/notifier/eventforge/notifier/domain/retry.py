"""Exponential backoff with jitter between the attempts of a delivery or an email."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    """Attempt n waits between half and all of min(max, base·2^(n-1)) seconds ("equal jitter").

    The ceilings double (1 s, 2 s, 4 s ... with the defaults) and the jitter keeps endpoints that
    failed together from being retried together, while each wait still grows: the shortest wait
    after attempt n+1 is the longest after attempt n.
    """

    base_seconds: float = 1.0
    max_seconds: float = 300.0
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed attempt `attempt` (1-based)."""
        if attempt < 1:
            raise ValueError("attempts are numbered from 1")
        return float(min(self.max_seconds, self.base_seconds * 2 ** min(attempt - 1, 62)))

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt `attempt`, jittered."""
        ceiling = self.ceiling(attempt)
        return ceiling / 2 + self.random() * ceiling / 2

    def schedule(self, attempts: int) -> list[float]:
        """The ceilings of the waits between `attempts` attempts (for documentation and tests)."""
        return [self.ceiling(n) for n in range(1, attempts)]
