"""Which failures move on to the next model, and how Retry-After cools a model down."""

from __future__ import annotations

import time

import pytest

from turnout.providers import failover
from turnout.providers.failover import Cooldowns, is_retryable, retry_after


@pytest.mark.parametrize(
    ("status", "expected"),
    [(429, True), (500, True), (503, True), (529, True), (400, False), (401, False), (404, False)],
)
def test_only_rate_limits_and_server_errors_are_retried(status: int, expected: bool) -> None:
    assert is_retryable(status) is expected


def test_retry_after_in_seconds_or_as_a_date_and_bounded() -> None:
    assert retry_after({"retry-after": "7"}) == 7
    assert retry_after({"retry-after": "100000"}) == failover.MAX_COOLDOWN
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


def test_cooled_models_are_tried_last_until_their_time_is_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    cooldowns = Cooldowns()
    cooldowns.cool("a", 30)
    assert cooldowns.order(["a", "b", "c"]) == ["b", "c", "a"]
    now[0] += 31
    assert cooldowns.order(["a", "b", "c"]) == ["a", "b", "c"]
