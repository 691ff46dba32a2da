"""Rate limits in memory and in a real redis-server: exact counts, token windows, headers,
sharing between instances, and a Redis that is down, dies, or never answers."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from redis_server import RedisServer, free_port, running_redis, silent_port

from turnout.governance.ratelimit import (
    STORAGE_UNAVAILABLE,
    Admission,
    Limit,
    RateLimiter,
    Rejection,
    format_duration,
    redact_url,
)

T = TypeVar("T")

BACKENDS = ["memory", "redis"]


def run(coroutine: Awaitable[T]) -> T:
    async def main() -> T:
        return await coroutine

    return asyncio.run(main())


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
def make(request: pytest.FixtureRequest) -> Callable[[], RateLimiter]:
    """A factory for the parametrised backend; Redis is flushed before each test."""
    backend = request.param
    if backend == "memory":
        return RateLimiter.in_memory
    server: RedisServer = request.getfixturevalue("redis")
    server.command("FLUSHALL")
    return lambda: RateLimiter.redis(server.url, on_unavailable="deny")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Wall-clock time for the in-memory storage (and the limiter), moved by hand."""
    fake = Clock(1_800_000_000.0)
    monkeypatch.setattr(time, "time", fake)
    return fake


def requests(amount: int, unit: Any = "minute", name: str = "ratelimits[0]") -> Limit:
    return Limit(name=name, counted="requests", amount=amount, unit=unit)


def tokens(amount: int, unit: Any = "minute", name: str = "ratelimits[1]") -> Limit:
    return Limit(name=name, counted="tokens", amount=amount, unit=unit)


def seconds(duration: str) -> float:
    """Parse OpenAI's (Go's) duration format back, to check header values."""
    parts = re.findall(r"([\d.]+)(h|ms|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


async def admit_n(limiter: RateLimiter, checks: list[tuple[Limit, str]], n: int) -> list[Admission]:
    return [await limiter.admit(checks) for _ in range(n)]


# --- exact counts ---------------------------------------------------------------------------


@pytest.mark.parametrize("make", BACKENDS, indirect=True)
def test_requests_pass_up_to_the_amount_and_the_next_is_refused(make: Callable[[], RateLimiter]):
    limit = requests(5)

    async def scenario() -> list[Admission]:
        limiter = make()
        try:
            return await admit_n(limiter, [(limit, "team-a")], 7)
        finally:
            await limiter.aclose()

    admissions = run(scenario())
    assert [a.allowed for a in admissions] == [True] * 5 + [False, False]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in admissions] == [
        "4", "3", "2", "1", "0", "0", "0",
    ]  # fmt: skip
    rejection = admissions[5].rejection
    assert rejection is not None and rejection.limit == limit
    assert 0 < rejection.retry_after <= 60
    assert 1 <= int(rejection.retry_after_header()) <= 60
    assert not rejection.storage_unavailable


@pytest.mark.parametrize("make", BACKENDS, indirect=True)
def test_an_amount_of_one(make: Callable[[], RateLimiter]):
    async def scenario() -> list[bool]:
        limiter = make()
        try:
            return [(await limiter.admit([(requests(1), "k")])).allowed for _ in range(3)]
        finally:
            await limiter.aclose()

    assert run(scenario()) == [True, False, False]


@pytest.mark.parametrize("make", BACKENDS, indirect=True)
def test_identities_and_limits_are_counted_apart(make: Callable[[], RateLimiter]):
    a, b = requests(2, name="ratelimits[0]"), requests(2, name="ratelimits[1]")

    async def scenario() -> dict[str, list[bool]]:
        limiter = make()
        try:
            out: dict[str, list[bool]] = {}
            for label, checks in {
                "a/alice": [(a, "alice")],
                "a/bob": [(a, "bob")],
                "b/alice": [(b, "alice")],
                "a/slash": [(a, "x/y")],  # must not collide with other identities or names
            }.items():
                out[label] = [(await limiter.admit(checks)).allowed for _ in range(3)]
            return out
        finally:
            await limiter.aclose()

    for allowed in run(scenario()).values():
        assert allowed == [True, True, False]


@pytest.mark.parametrize("make", BACKENDS, indirect=True)
def test_the_same_check_twice_counts_once(make: Callable[[], RateLimiter]):
    limit = requests(2)

    async def scenario() -> list[bool]:
        limiter = make()
        try:
            return [(await limiter.admit([(limit, "k"), (limit, "k")])).allowed for _ in range(3)]
        finally:
            await limiter.aclose()

    assert run(scenario()) == [True, True, False]


# --- tokens -------------------------------------------------------------------------------


@pytest.mark.parametrize("make", BACKENDS, indirect=True)
def test_token_limit_refuses_once_used_up_and_records_past_the_amount(
    make: Callable[[], RateLimiter],
):
    limit = tokens(100)
    checks = [(limit, "team-a")]

    async def scenario() -> None:
        limiter = make()
        try:
            first = await limiter.admit(checks)
            assert first.allowed
            assert first.headers["x-ratelimit-remaining-tokens"] == "100"
            assert first.headers["x-ratelimit-reset-tokens"] == "0s"  # nothing used yet
            await limiter.record_tokens(checks, 60)
            second = await limiter.admit(checks)  # 60 of 100 used: still allowed
            assert second.allowed and second.headers["x-ratelimit-remaining-tokens"] == "40"
            await limiter.record_tokens(checks, 75)  # recorded in full, past the amount
            assert await limiter.used(limit, "team-a") == 135
            third = await limiter.admit(checks)
            assert third.rejection is not None and third.rejection.limit == limit
            assert third.headers["x-ratelimit-remaining-tokens"] == "0"
            assert 0 < third.rejection.retry_after <= 60
            await limiter.record_tokens(checks, 0)  # nothing to add
            await limiter.record_tokens([(requests(5), "team-a")], 10)  # not a token limit
            assert await limiter.used(limit, "team-a") == 135
            assert await limiter.used(requests(5), "team-a") == 0
        finally:
            await limiter.aclose()

    run(scenario())


@pytest.mark.parametrize("make", BACKENDS, indirect=True)
def test_a_refused_request_consumes_no_other_limit(make: Callable[[], RateLimiter]):
    roomy, tight, budget = requests(10, name="roomy"), requests(1, name="tight"), tokens(50)

    async def scenario() -> None:
        limiter = make()
        try:
            checks = [(roomy, "k"), (tight, "k"), (budget, "k")]
            assert (await limiter.admit(checks)).allowed
            refused = await limiter.admit(checks)
            assert refused.rejection is not None and refused.rejection.limit == tight
            assert await limiter.used(roomy, "k") == 1  # the refused request did not count
            # used-up tokens refuse too, and again nothing else is counted
            await limiter.record_tokens(checks, 50)
            other = [(roomy, "k"), (requests(3, name="fresh"), "k"), (budget, "k")]
            refused = await limiter.admit(other)
            assert refused.rejection is not None and refused.rejection.limit == budget
            assert await limiter.used(roomy, "k") == 1
            assert await limiter.used(requests(3, name="fresh"), "k") == 0
        finally:
            await limiter.aclose()

    run(scenario())


# --- headers ------------------------------------------------------------------------------


@pytest.mark.parametrize("make", BACKENDS, indirect=True)
def test_headers_describe_the_tightest_limit_of_each_kind(make: Callable[[], RateLimiter]):
    per_minute, per_hour = requests(100, "minute", "per minute"), requests(3, "hour", "per hour")
    tpm = tokens(1000, "minute", "tpm")
    tpd = tokens(5000, "day", "tpd")

    async def scenario() -> dict[str, str]:
        limiter = make()
        try:
            checks = [(per_minute, "k"), (per_hour, "k"), (tpm, "k"), (tpd, "k")]
            await limiter.admit(checks)
            await limiter.record_tokens(checks, 900)
            return (await limiter.admit(checks)).headers
        finally:
            await limiter.aclose()

    headers = run(scenario())
    assert headers["x-ratelimit-limit-requests"] == "3"  # 1 left of 3 beats 98 of 100
    assert headers["x-ratelimit-remaining-requests"] == "1"
    assert 3590 < seconds(headers["x-ratelimit-reset-requests"]) <= 3600
    assert headers["x-ratelimit-limit-tokens"] == "1000"  # 100 left of 1000 beats 4100 of 5000
    assert headers["x-ratelimit-remaining-tokens"] == "100"
    assert 50 < seconds(headers["x-ratelimit-reset-tokens"]) <= 60
    assert set(headers) == {
        f"x-ratelimit-{what}-{kind}"
        for what in ("limit", "remaining", "reset")
        for kind in ("requests", "tokens")
    }


def test_only_the_kinds_checked_have_headers():
    async def scenario() -> Admission:
        limiter = RateLimiter.in_memory()
        return await limiter.admit([(requests(2), "k")])

    assert set(run(scenario()).headers) == {
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    }
    assert run(RateLimiter.in_memory().admit([])) == Admission(None, {})


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0s"),
        (-3, "0s"),
        (0.0123, "13ms"),
        (0.5, "500ms"),
        (1, "1s"),
        (12, "12s"),
        (12.5, "12.5s"),
        (59.9999, "1m0s"),
        (90, "1m30s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
        (86399, "23h59m59s"),
    ],
)
def test_reset_uses_openais_duration_format(value: float, text: str):
    assert format_duration(value) == text
    assert seconds(text) == pytest.approx(max(0, value), abs=0.001)


# --- windows and time -----------------------------------------------------------------------


def test_retry_after_counts_down_and_the_window_reopens(clock: Clock):
    limit = requests(2, "minute")

    async def scenario() -> None:
        limiter = RateLimiter.in_memory()
        assert (await limiter.admit([(limit, "k")])).allowed  # the window opens here
        clock.now += 20
        admission = await limiter.admit([(limit, "k")])
        assert admission.allowed and admission.headers["x-ratelimit-reset-requests"] == "40s"
        clock.now += 10
        refused = await limiter.admit([(limit, "k")])
        assert refused.rejection is not None
        assert refused.rejection.retry_after == pytest.approx(30)
        assert refused.rejection.retry_after_header() == "30"
        assert refused.headers["x-ratelimit-reset-requests"] == "30s"
        clock.now += 30.001
        again = await limiter.admit([(limit, "k")])
        assert again.allowed and again.headers["x-ratelimit-remaining-requests"] == "1"
        await limiter.aclose()

    run(scenario())


def test_retry_after_header_is_at_least_one_second():
    assert Rejection(requests(1), 0.2).retry_after_header() == "1"
    assert Rejection(requests(1), 1.01).retry_after_header() == "2"


def test_a_redis_window_reopens_after_its_second(redis: RedisServer):
    limit = requests(2, "second")

    async def scenario() -> None:
        limiter = RateLimiter.redis(redis.url, on_unavailable="deny")
        try:
            await admit_n(limiter, [(limit, "reopen")], 2)
            refused = await limiter.admit([(limit, "reopen")])
            assert refused.rejection is not None
            assert 0 < refused.rejection.retry_after <= 1.5
            await asyncio.sleep(refused.rejection.retry_after + 0.1)
            assert (await limiter.admit([(limit, "reopen")])).allowed
        finally:
            await limiter.aclose()

    run(scenario())


# --- replicas sharing one Redis ---------------------------------------------------------------


def test_two_instances_on_one_redis_share_the_count(redis: RedisServer):
    limit = requests(4)

    async def scenario() -> list[bool]:
        one = RateLimiter.redis(redis.url, on_unavailable="deny")
        two = RateLimiter.redis(redis.url, on_unavailable="deny")
        try:
            allowed = []
            for i in range(6):
                limiter = one if i % 2 == 0 else two
                allowed.append((await limiter.admit([(limit, "shared")])).allowed)
            await one.record_tokens([(tokens(10), "shared")], 25)
            refused = await two.admit([(tokens(10), "shared")])
            assert refused.rejection is not None
            return allowed
        finally:
            await one.aclose()
            await two.aclose()

    assert run(scenario()) == [True, True, True, True, False, False]


def test_concurrent_requests_on_two_instances_never_exceed_the_amount(redis: RedisServer):
    """Races between the read and the increment: a request that finds it went past the amount
    gives its count back and is refused, so exactly `amount` get through."""
    limit = requests(5)

    async def scenario() -> tuple[int, int]:
        one = RateLimiter.redis(redis.url, on_unavailable="deny")
        two = RateLimiter.redis(redis.url, on_unavailable="deny")
        try:
            results = await asyncio.gather(
                *[(one if i % 2 else two).admit([(limit, "race")]) for i in range(40)]
            )
            return sum(a.allowed for a in results), await one.used(limit, "race")
        finally:
            await one.aclose()
            await two.aclose()

    allowed, counted = run(scenario())
    assert allowed == 5
    assert counted == 5


# --- storage trouble ------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["allow", "deny"])
def test_redis_down_at_start(policy: Any):
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    async def scenario() -> tuple[Admission, int]:
        limiter = RateLimiter.redis(url, on_unavailable=policy, cooldown=0)
        try:
            admission = await limiter.admit([(requests(1), "k"), (tokens(10), "k")])
            await limiter.record_tokens([(tokens(10), "k")], 5)  # logged, not raised
            return admission, limiter.unavailable_events
        finally:
            await limiter.aclose()

    admission, events = run(scenario())
    assert events == 2
    assert admission.headers == {}
    if policy == "allow":
        assert admission.allowed
    else:
        assert admission.rejection is not None
        assert admission.rejection.storage_unavailable
        assert admission.rejection.limit == STORAGE_UNAVAILABLE
        assert "unavailable" in admission.rejection.limit.name
        assert admission.rejection.retry_after >= 1


@pytest.mark.parametrize("policy", ["allow", "deny"])
def test_redis_dies_mid_way_and_comes_back(policy: Any):
    server = RedisServer()
    limit = requests(3)

    async def scenario() -> None:
        limiter = RateLimiter.redis(server.url, on_unavailable=policy, cooldown=0)
        try:
            assert (await limiter.admit([(limit, "k")])).allowed
            server.stop()
            down = await limiter.admit([(limit, "k")])
            assert down.allowed == (policy == "allow")
            assert limiter.unavailable_events == 1
            server.start()  # same port, empty (no persistence)
            assert (await limiter.admit([(limit, "k")])).allowed
            assert await limiter.used(limit, "k") == 1
            assert limiter.unavailable_events == 1
        finally:
            await limiter.aclose()

    try:
        server.start()
        run(scenario())
    finally:
        server.close()


@pytest.mark.parametrize("policy", ["allow", "deny"])
def test_a_redis_that_never_answers_costs_a_bounded_wait(policy: Any):
    async def scenario(port: int) -> Admission:
        url = f"redis://127.0.0.1:{port}/0"
        limiter = RateLimiter.redis(url, on_unavailable=policy, timeout=0.2)
        try:
            admission = await limiter.admit([(requests(1), "k")])
            assert limiter.unavailable_events == 1
            return admission
        finally:
            await limiter.aclose()

    with silent_port() as port:
        admission = run(scenario(port))
    assert admission.allowed == (policy == "allow")


def test_after_a_failure_the_storage_is_left_alone_for_the_cooldown():
    url = f"redis://127.0.0.1:{free_port()}/0"

    async def scenario() -> None:
        limiter = RateLimiter.redis(url, on_unavailable="deny", cooldown=60)
        try:
            for _ in range(5):
                admission = await limiter.admit([(requests(1), "k")])
                assert admission.rejection is not None
                assert admission.rejection.storage_unavailable
                assert admission.rejection.retry_after == 60
            assert limiter.unavailable_events == 1  # tried once, then skipped
        finally:
            await limiter.aclose()

    run(scenario())


def test_the_log_never_shows_the_password(caplog: pytest.LogCaptureFixture):
    url = f"redis://user:s3cret-pw@127.0.0.1:{free_port()}/0"

    async def scenario() -> None:
        limiter = RateLimiter.redis(url, on_unavailable="allow")
        await limiter.admit([(requests(1), "k")])
        await limiter.aclose()

    with caplog.at_level(logging.WARNING, logger="turnout.governance.ratelimit"):
        run(scenario())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "s3cret-pw" not in text
    assert f"redis://user:***@127.0.0.1:{url.split(':')[3].split('/')[0]}/0" in text
    assert "allowing" in text


def test_redact_url():
    assert redact_url("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("rediss://u:pw@[::1]:6380") == "rediss://u:***@[::1]:6380"
    assert redact_url("redis://host:6379") == "redis://host:6379"


# --- configuration errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"amount": 0},
        {"amount": -1},
        {"amount": True},
        {"unit": "week"},
        {"counted": "dollars"},
    ],
)
def test_bad_limits_are_refused(kwargs: dict[str, Any]):
    values: dict[str, Any] = {"name": "x", "counted": "requests", "amount": 1, "unit": "minute"}
    with pytest.raises(ValueError, match="x"):
        Limit(**(values | kwargs))


def test_bad_redis_settings_are_refused():
    with pytest.raises(ValueError, match="redis://"):
        RateLimiter.redis("http://localhost:6379", on_unavailable="allow")
    with pytest.raises(ValueError, match="on_unavailable"):
        RateLimiter.redis("redis://localhost:6379", on_unavailable="maybe")  # type: ignore[arg-type]


def test_limits_describe_themselves():
    limit = tokens(100_000, "hour", name="ratelimits[2]")
    assert limit.describe() == "100000 tokens per hour"
    assert (limit.seconds, requests(1, "day").seconds, requests(1, "second").seconds) == (
        3600,
        86400,
        1,
    )
