"""A circuit breaker, so a router that keeps failing stops costing every request its timeout.

Hand-written (about forty lines) rather than a library: pybreaker's async support runs on
Tornado, and the state needed here is three fields read on the event loop's one thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Closed: calls go through. After `failures_to_open` failures in a row it opens and refuses
    calls for `cooldown` seconds; then one probe call goes through (half open) and its outcome
    closes the breaker again or restarts the cool-down."""

    def __init__(
        self,
        failures_to_open: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures_to_open = failures_to_open
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._probing or self._clock() - self._opened_at >= self.cooldown:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """Whether to make the call now; in the half-open state only one probe is let through."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def succeeded(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def abandoned(self) -> None:
        """The call was cancelled before it told anything about the router: free the probe slot."""
        self._probing = False

    def failed(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.failures_to_open:
            self._opened_at = self._clock()
        self._probing = False
