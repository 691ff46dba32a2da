"""Budgets per client key: spend per UTC day and calendar month, in memory and in Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from redis_server import RedisServer, free_port, running_redis

from turnout.governance.budget import (
    BudgetBook,
    BudgetLimits,
    Overspent,
    day_end,
    month_end,
    to_micro,
)
from turnout.governance.ratelimit import RateLimiter, StorageUnavailable

T = TypeVar("T")


def run(coroutine: Awaitable[T]) -> T:
    async def main() -> T:
        return await coroutine

    return asyncio.run(main())


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
def make_limiter(request: pytest.FixtureRequest) -> Callable[[], RateLimiter]:
    if request.param == "memory":
        return RateLimiter.in_memory
    server: RedisServer = request.getfixturevalue("redis")
    server.command("FLUSHALL")
    return lambda: RateLimiter.redis(server.url, on_unavailable="deny")


DAILY = BudgetLimits(daily_usd=0.01, monthly_usd=None)


def test_spend_is_refused_once_it_reaches_the_daily_limit(
    make_limiter: Callable[[], RateLimiter],
):
    clock = Clock(datetime(2026, 11, 25, 18, 0, tzinfo=UTC))

    async def scenario() -> list[Overspent | None]:
        limiter = make_limiter()
        book = BudgetBook(limiter, clock=clock)
        try:
            seen = [await book.check("team-a", DAILY)]
            await book.charge("team-a", 0.004)
            seen.append(await book.check("team-a", DAILY))
            await book.charge("team-a", 0.006)  # exactly the limit: refused from now on
            seen.append(await book.check("team-a", DAILY))
            await book.charge("team-a", 0.005)  # a request already in flight is still charged
            seen.append(await book.check("team-a", DAILY))
            assert await book.spent("team-a") == (pytest.approx(0.015), pytest.approx(0.015))
            assert await book.check("team-b", DAILY) is None  # other keys are apart
            return seen
        finally:
            await limiter.aclose()

    before, partly, reached, past = run(scenario())
    assert before is None and partly is None
    assert reached is not None
    assert (reached.period, reached.limit_usd) == ("day", 0.01)
    assert reached.spent_usd == pytest.approx(0.01)
    assert reached.retry_after == pytest.approx(6 * 3600)
    assert past is not None and past.spent_usd == pytest.approx(0.015)
    assert not reached.storage_unavailable
    assert reached.retry_after_header() == str(6 * 3600)


def test_the_month_is_reported_when_both_are_spent(make_limiter: Callable[[], RateLimiter]):
    clock = Clock(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))
    both = BudgetLimits(daily_usd=1.0, monthly_usd=2.0)

    async def scenario() -> list[Overspent | None]:
        limiter = make_limiter()
        book = BudgetBook(limiter, clock=clock)
        try:
            await book.charge("k", 1.5)
            day_only = await book.check("k", both)
            clock.now += timedelta(days=1)  # a new day, the same month
            fresh_day = await book.check("k", both)
            await book.charge("k", 0.5)
            month = await book.check("k", both)
            return [day_only, fresh_day, month]
        finally:
            await limiter.aclose()

    day_only, fresh_day, month = run(scenario())
    assert day_only is not None and day_only.period == "day"
    assert fresh_day is None
    assert month is not None and month.period == "month"
    assert month.limit_usd == 2.0 and month.spent_usd == pytest.approx(2.0)
    # from 26 November 12:00 to 1 December 00:00
    assert month.retry_after == pytest.approx((4 * 24 + 12) * 3600)


def test_day_and_month_roll_over_at_utc_midnight(make_limiter: Callable[[], RateLimiter]):
    clock = Clock(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC))
    limits = BudgetLimits(daily_usd=0.5, monthly_usd=0.5)

    async def scenario() -> None:
        limiter = make_limiter()
        book = BudgetBook(limiter, clock=clock)
        try:
            await book.charge("k", 0.5)
            refused = await book.check("k", limits)
            assert refused is not None and refused.period == "month"
            assert refused.retry_after == pytest.approx(1)
            clock.now = datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC)  # new day, month and year
            assert await book.check("k", limits) is None
            assert await book.spent("k") == (0.0, 0.0)
            await book.charge("k", 0.25)
            clock.now = datetime(2027, 1, 2, 9, 0, tzinfo=UTC)
            assert await book.spent("k") == (0.0, 0.25)
        finally:
            await limiter.aclose()

    run(scenario())


def test_the_clock_may_be_in_another_time_zone():
    """Periods are UTC whatever zone the clock answers in: 01:00 in UTC+2 is the previous
    UTC day."""
    clock = Clock(datetime(2026, 12, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))))

    async def scenario() -> tuple[float, float]:
        book = BudgetBook(RateLimiter.in_memory(), clock=clock)
        await book.charge("k", 1.0)
        clock.now = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
        return await book.spent("k")

    assert run(scenario()) == (1.0, 1.0)


def test_two_books_on_one_redis_share_spend(redis: RedisServer):
    clock = Clock(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))

    async def scenario() -> Overspent | None:
        one = RateLimiter.redis(redis.url, on_unavailable="deny")
        two = RateLimiter.redis(redis.url, on_unavailable="deny")
        try:
            await BudgetBook(one, clock=clock).charge("shared-key", 0.006)
            await BudgetBook(two, clock=clock).charge("shared-key", 0.006)
            return await BudgetBook(one.store, clock=clock).check("shared-key", DAILY)
        finally:
            await one.aclose()
            await two.aclose()

    refused = run(scenario())
    assert refused is not None and refused.spent_usd == pytest.approx(0.012)


def test_key_names_are_encoded_in_storage_keys(redis: RedisServer):
    clock = Clock(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))

    async def scenario() -> tuple[tuple[float, float], tuple[float, float]]:
        limiter = RateLimiter.redis(redis.url, on_unavailable="deny")
        book = BudgetBook(limiter, clock=clock)
        try:
            await book.charge("a:2026-11", 1.0)  # must not land in key "a"'s month
            return await book.spent("a"), await book.spent("a:2026-11")
        finally:
            await limiter.aclose()

    assert run(scenario()) == ((0.0, 0.0), (1.0, 1.0))
    keys = redis.command("KEYS", "*").decode()
    assert "turnout:budget:a%3A2026-11:2026-11-25" in keys
    assert "turnout:budget:a%3A2026-11:2026-11" in keys


def test_no_limits_means_no_lookup():
    async def scenario() -> Overspent | None:
        limiter = RateLimiter.redis(f"redis://127.0.0.1:{free_port()}", on_unavailable="deny")
        book = BudgetBook(limiter)
        result = await book.check("k", BudgetLimits(None, None))
        assert limiter.unavailable_events == 0
        await limiter.aclose()
        return result

    assert run(scenario()) is None


# --- rounding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usd", "micro"),
    [
        (0.000003, 3),
        (0.1 + 0.2, 300_000),  # float noise is not a micro-dollar
        (0.00000015, 1),  # any part of a micro-dollar counts as one
        (0.000001001, 2),
        (0.0000010001, 1),  # less than a thousandth of a micro-dollar over: noise
        (12.5, 12_500_000),
        (0, 0),
        (-1.0, 0),
        (float("nan"), 0),
        (float("inf"), 0),
    ],
)
def test_micro_dollars_round_up(usd: float, micro: int):
    assert to_micro(usd) == micro


def test_many_tiny_charges_add_up():
    """A one-token request on a cheap model costs a fraction of a micro-dollar; a thousand of
    them must not cost nothing."""
    clock = Clock(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))

    async def scenario() -> tuple[float, float]:
        book = BudgetBook(RateLimiter.in_memory(), clock=clock)
        for _ in range(1000):
            await book.charge("k", 0.05 / 1_000_000)  # one token at $0.05 per million
        await book.charge("k", 0.0)
        return await book.spent("k")

    assert run(scenario()) == (0.001, 0.001)


def test_period_ends():
    now = datetime(2026, 2, 28, 13, 30, tzinfo=UTC)
    assert day_end(now) == datetime(2026, 3, 1, tzinfo=UTC)
    assert month_end(now) == datetime(2026, 3, 1, tzinfo=UTC)
    assert month_end(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)


# --- storage trouble ------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["allow", "deny"])
def test_budgets_with_redis_down(policy: Any):
    url = f"redis://127.0.0.1:{free_port()}/0"
    limits = BudgetLimits(daily_usd=None, monthly_usd=50.0)

    async def scenario() -> tuple[Overspent | None, int]:
        limiter = RateLimiter.redis(url, on_unavailable=policy, cooldown=0)
        book = BudgetBook(limiter)
        try:
            result = await book.check("k", limits)
            await book.charge("k", 1.0)  # logged and counted, not raised
            with pytest.raises(StorageUnavailable):
                await book.spent("k")
            return result, limiter.unavailable_events
        finally:
            await limiter.aclose()

    result, events = run(scenario())
    assert events == 3
    if policy == "allow":
        assert result is None
    else:
        assert result is not None and result.storage_unavailable
        assert result.period == "month" and result.limit_usd == 50.0
        assert result.retry_after >= 1
