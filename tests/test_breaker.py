"""The circuit breaker that keeps a failing LLM router from costing every request its timeout."""

from __future__ import annotations

from turnout.routing.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def opened(clock: Clock) -> CircuitBreaker:
    breaker = CircuitBreaker(failures_to_open=3, cooldown=30, clock=clock)
    for _ in range(3):
        assert breaker.allow()
        breaker.failed()
    return breaker


def test_it_opens_after_the_configured_failures_in_a_row_only() -> None:
    breaker = CircuitBreaker(failures_to_open=3, cooldown=30, clock=Clock())
    breaker.failed()
    breaker.failed()
    breaker.succeeded()  # a success resets the count
    breaker.failed()
    breaker.failed()
    assert breaker.state == "closed" and breaker.allow()
    breaker.failed()
    assert breaker.state == "open" and not breaker.allow()


def test_after_the_cooldown_one_probe_goes_through_and_its_success_closes_it() -> None:
    clock = Clock()
    breaker = opened(clock)
    clock.now = 29.9
    assert not breaker.allow()
    clock.now = 30.0
    assert breaker.state == "half_open"
    assert breaker.allow()
    assert not breaker.allow()  # one probe at a time
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.allow()


def test_a_failed_probe_restarts_the_cooldown() -> None:
    clock = Clock()
    breaker = opened(clock)
    clock.now = 31
    assert breaker.allow()
    breaker.failed()
    assert breaker.state == "open"
    clock.now = 60
    assert not breaker.allow()
    clock.now = 61
    assert breaker.allow()


def test_an_abandoned_probe_frees_the_slot_without_counting() -> None:
    clock = Clock()
    breaker = opened(clock)
    clock.now = 30
    assert breaker.allow()
    breaker.abandoned()
    assert breaker.state == "half_open" and breaker.allow()
