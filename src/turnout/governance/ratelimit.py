"""Request and token rate limits, counted in memory (one process) or in Redis (shared by replicas).

Counting is the `limits` library's fixed-window strategy: a window opens at the first hit on a
key and lasts one unit (second, minute, hour or day); its counter expires with it. Keys are
`ratelimit/<requests|tokens>/<limit name>/<identity>/<amount>/1/<unit>` (the name and identity
percent-encoded), under the `turnout:` prefix in Redis.

A request is admitted in two steps: read every window it is subject to, refuse on the first one
that is used up, and only then count it against each request limit. Nothing is consumed by a
refused request. On Redis another replica can count between the read and the increment; the
increment returns the new count, so a request that finds it went past a limit after all is
refused and its increments taken back. Request limits therefore never admit more than their
amount per window; token limits are checked against tokens already recorded (a response's tokens
are only known once it is done), so concurrent requests may together overshoot by what they use.

When the storage cannot be reached (or does not answer within `timeout` seconds), `admit` never
raises: `on_unavailable="allow"` lets the request through, `"deny"` refuses it with
`STORAGE_UNAVAILABLE` as the limit. After a failure the storage is left alone for `cooldown`
seconds, so a dead Redis costs each request nothing rather than a connect timeout.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.errors import StorageError
from limits.limits import GRANULARITIES

if TYPE_CHECKING:
    from redis.asyncio import ConnectionPool

log = logging.getLogger(__name__)

Unit = Literal["second", "minute", "hour", "day"]
Counted = Literal["requests", "tokens"]
OnUnavailable = Literal["allow", "deny"]

UNITS: tuple[Unit, ...] = ("second", "minute", "hour", "day")
KEY_PREFIX = "turnout"
NAMESPACE = "ratelimit"
DEFAULT_TIMEOUT = 0.5
DEFAULT_COOLDOWN = 1.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Limit:
    name: str  # what it is, for logs and the 429 message: "ratelimits[0]", "client key team-a"
    counted: Counted
    amount: int  # > 0
    unit: Unit

    def __post_init__(self) -> None:
        if self.counted not in ("requests", "tokens"):
            raise ValueError(f"{self.name}: counted must be 'requests' or 'tokens'")
        if self.unit not in UNITS:
            raise ValueError(f"{self.name}: unit must be one of {', '.join(UNITS)}")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount <= 0:
            raise ValueError(f"{self.name}: amount must be a whole number > 0")

    @property
    def seconds(self) -> int:
        """Length of the window."""
        return GRANULARITIES[self.unit].GRANULARITY.seconds

    def describe(self) -> str:
        """`100000 tokens per hour`, for logs and error messages (beside the name)."""
        return f"{self.amount} {self.counted} per {self.unit}"


STORAGE_UNAVAILABLE = Limit(
    name="rate-limit storage unavailable", counted="requests", amount=1, unit="second"
)
"""The limit of a Rejection made because the storage could not be reached (on_unavailable="deny")."""


@dataclass(frozen=True, slots=True)
class Rejection:
    limit: Limit
    retry_after: float  # seconds until the window resets

    @property
    def storage_unavailable(self) -> bool:
        """Refused because the storage could not be asked, not because a limit was reached."""
        return self.limit == STORAGE_UNAVAILABLE

    def retry_after_header(self) -> str:
        """The Retry-After value: whole seconds, rounded up, at least 1."""
        return str(max(1, math.ceil(self.retry_after)))


@dataclass(frozen=True, slots=True)
class Admission:
    rejection: Rejection | None  # None: allowed
    headers: dict[str, str]  # x-ratelimit-{limit,remaining,reset}-{requests,tokens}

    @property
    def allowed(self) -> bool:
        return self.rejection is None


class StorageUnavailable(Exception):
    """The rate-limit storage could not be reached or did not answer in time."""


def redact_url(url: str) -> str:
    """The URL with its password replaced by `***`, for logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "<unparseable URL>"


def format_duration(seconds: float) -> str:
    """OpenAI's reset format (Go's duration syntax): `0s`, `250ms`, `12s`, `1m30s`, `2h0m0s`."""
    ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms // 1000}" if ms % 1000 == 0 else f"{ms / 1000:.3f}".rstrip("0")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


class Store:
    """A `limits` storage with bounded waits, failure counting and a cool-down after a failure.
    Shared by RateLimiter and BudgetBook so that both see one storage and one event count."""

    def __init__(
        self,
        storage: Storage,
        *,
        description: str,
        on_unavailable: OnUnavailable,
        timeout: float | None = DEFAULT_TIMEOUT,
        cooldown: float = DEFAULT_COOLDOWN,
        errors: tuple[type[BaseException], ...] = (),
        closer: Callable[[], Awaitable[None]] | None = None,
        secret: str | None = None,
    ) -> None:
        if on_unavailable not in ("allow", "deny"):
            raise ValueError("on_unavailable must be 'allow' or 'deny'")
        self.storage = storage
        self.description = description  # safe to log: no password
        self.on_unavailable: OnUnavailable = on_unavailable
        self.timeout = timeout
        self.cooldown = cooldown
        self.unavailable_events = 0
        self._count_unavailable: Callable[[], None] = lambda: None
        self._closer = closer
        self._secret = secret
        self._down_until = 0.0
        # TimeoutError: ours (asyncio.timeout) or a socket's; OSError: refused, unreachable...
        self._errors: tuple[type[BaseException], ...] = (
            StorageError,
            OSError,
            TimeoutError,
            *errors,
        )

    async def run(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Run `operation` against the storage within `timeout` seconds, or raise
        StorageUnavailable (also, without trying, while cooling down after a failure)."""
        if time.monotonic() < self._down_until:
            raise StorageUnavailable(f"{self.description} unavailable (cooling down)")
        try:
            async with asyncio.timeout(self.timeout):
                return await operation()
        except self._errors as exc:
            self.unavailable_events += 1
            self._count_unavailable()
            self._down_until = time.monotonic() + self.cooldown
            log.warning(
                "%s unavailable while trying to %s (%s); %s",
                self.description,
                what,
                failure_reason(exc, self._secret),
                "allowing requests" if self.on_unavailable == "allow" else "refusing requests",
            )
            raise StorageUnavailable(f"{self.description} unavailable") from exc

    def count_unavailable_with(self, count: Callable[[], None]) -> None:
        """Also call `count` (the gateway's metric) each time the storage cannot be reached."""
        self._count_unavailable = count

    async def aclose(self) -> None:
        timer = getattr(self.storage, "timer", None)  # MemoryStorage's expiry task
        if isinstance(timer, asyncio.Task) and not timer.done():
            timer.cancel()
        if self._closer is not None:
            await self._closer()


async def _all(coroutines: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Await concurrently; on the first failure cancel the rest and raise that failure."""
    if len(coroutines) == 1:
        return [await coroutines[0]]
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in coroutines]
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from None
    return [task.result() for task in tasks]


@dataclass(slots=True)
class _Window:
    limit: Limit
    key: str
    used: int = 0  # after this request's hit, for request limits

    @property
    def remaining(self) -> int:
        return max(0, self.limit.amount - self.used)


def _key(limit: Limit, identity: str) -> str:
    item = _item(limit)
    return item.key_for(limit.counted, quote(limit.name, safe=""), quote(identity, safe=""))


def _item(limit: Limit) -> RateLimitItem:
    return GRANULARITIES[limit.unit](limit.amount, namespace=NAMESPACE)


def failure_reason(exc: BaseException, secret: str | None) -> str:
    """An exception as a log line can show it: Redis errors may quote the URL, password included."""
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return reason.replace(secret, "***") if secret else reason


def redis_pool(url: str, timeout: float) -> ConnectionPool:
    """A connection pool whose every wait is bounded by `timeout`, so a dead Redis costs a
    caller at most that, with one quick retry: a pooled connection may have died with a restart."""
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return redis.asyncio.ConnectionPool.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 1)
    )


class RateLimiter:
    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    def in_memory(cls) -> RateLimiter:
        """Counts in this process only (each replica or worker has its own)."""
        store = Store(
            MemoryStorage(),
            description="in-memory rate-limit storage",
            on_unavailable="allow",
            timeout=None,  # nothing to wait for; a busy event loop must not look like an outage
        )
        return cls(store)

    @classmethod
    def redis(
        cls,
        url: str,
        on_unavailable: OnUnavailable,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        cooldown: float = DEFAULT_COOLDOWN,
    ) -> RateLimiter:
        """Counts in Redis at `url` (`redis://`, `rediss://` or `unix://`), shared by every
        instance using it. Nothing connects until the first request."""
        from redis.exceptions import RedisError

        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                "rate-limit storage URL must start with redis://, rediss:// or unix://"
            )
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        pool = redis_pool(url, timeout)
        scheme = {"redis": "async+redis", "rediss": "async+rediss", "unix": "async+redis+unix"}
        limits_uri = scheme[parts.scheme] + url[len(parts.scheme) :]
        options: dict[str, Any] = {"connection_pool": pool}
        storage = RedisStorage(
            limits_uri, implementation="redispy", key_prefix=KEY_PREFIX, **options
        )
        store = Store(
            storage,
            description=f"rate-limit storage {redact_url(url)}",
            on_unavailable=on_unavailable,
            # the whole admission (a few round trips) must fit; each socket wait has `timeout`
            timeout=timeout * 3,
            cooldown=cooldown,
            errors=(RedisError,),
            closer=pool.aclose,
            secret=parts.password,
        )
        return cls(store)

    @property
    def unavailable_events(self) -> int:
        """Times the storage was unreachable or too slow (budget lookups on it included)."""
        return self.store.unavailable_events

    async def admit(self, checks: Sequence[tuple[Limit, str]]) -> Admission:
        """Before calling upstream. Each check is a limit and the identity it applies to.
        Request limits count this request; token limits refuse once their window's tokens
        are used up. A refused request consumes nothing. Never raises for storage trouble."""
        windows = _windows(checks)
        if not windows:
            return Admission(None, {})
        try:
            return await self.store.run("check rate limits", lambda: self._admit(windows))
        except StorageUnavailable:
            return self._unavailable()

    async def _admit(self, windows: list[_Window]) -> Admission:
        storage = self.store.storage
        counts = await _all([storage.get(w.key) for w in windows])
        for window, used in zip(windows, counts, strict=True):
            window.used = used
        for window in windows:
            if window.used >= window.limit.amount:
                return await self._refuse(window, windows)
        requests = [w for w in windows if w.limit.counted == "requests"]
        if requests:
            after = await _all([storage.incr(w.key, w.limit.seconds, 1) for w in requests])
            for window, used in zip(requests, after, strict=True):
                window.used = used
            over = next((w for w in requests if w.used > w.limit.amount), None)
            if over is not None:
                # Another instance counted between our read and our increment: give ours back.
                await _all([storage.incr(w.key, w.limit.seconds, -1) for w in requests])
                for window in requests:
                    window.used -= 1
                return await self._refuse(over, windows)
        headers, _ = await self._headers(windows)
        return Admission(None, headers)

    async def _refuse(self, window: _Window, windows: list[_Window]) -> Admission:
        headers, reset = await self._headers(windows, prefer=window)
        return Admission(Rejection(window.limit, max(reset, 0.001)), headers)

    async def _headers(
        self, windows: list[_Window], prefer: _Window | None = None
    ) -> tuple[dict[str, str], float]:
        """OpenAI's x-ratelimit-* headers for the tightest limit of each kind: the refusing one
        (`prefer`), else the one with the fewest left (the longest window on a tie); and the
        seconds until `prefer`'s window resets."""
        chosen: list[_Window] = []
        for counted in ("requests", "tokens"):
            of_kind = [w for w in windows if w.limit.counted == counted]
            if prefer is not None and prefer.limit.counted == counted:
                chosen.append(prefer)
            elif of_kind:
                chosen.append(min(of_kind, key=lambda w: (w.remaining, -w.limit.seconds)))
        expiries = await _all([self.store.storage.get_expiry(w.key) for w in chosen])
        now = time.time()
        headers: dict[str, str] = {}
        prefer_reset = 0.0
        for window, expiry in zip(chosen, expiries, strict=True):
            kind = window.limit.counted
            reset = max(expiry - now, 0.0) if window.used > 0 else 0.0
            if window is prefer:
                prefer_reset = reset
            headers[f"x-ratelimit-limit-{kind}"] = str(window.limit.amount)
            headers[f"x-ratelimit-remaining-{kind}"] = str(window.remaining)
            headers[f"x-ratelimit-reset-{kind}"] = format_duration(reset)
        return headers, prefer_reset

    def _unavailable(self) -> Admission:
        if self.store.on_unavailable == "allow":
            return Admission(None, {})
        return Admission(Rejection(STORAGE_UNAVAILABLE, max(self.store.cooldown, 1.0)), {})

    async def record_tokens(self, checks: Sequence[tuple[Limit, str]], tokens: int) -> None:
        """After the response (or the end of a stream): add `tokens` to each token limit's
        window, even past its amount. Storage trouble is logged and counted, never raised."""
        if tokens <= 0:
            return
        windows = [w for w in _windows(checks) if w.limit.counted == "tokens"]
        if not windows:
            return
        storage = self.store.storage
        try:
            await self.store.run(
                "record tokens",
                lambda: _all([storage.incr(w.key, w.limit.seconds, tokens) for w in windows]),
            )
        except StorageUnavailable:
            pass

    async def used(self, limit: Limit, identity: str) -> int:
        """Requests or tokens counted in the limit's current window for `identity` (for admin
        and tests). Raises StorageUnavailable when the storage cannot be read."""
        key = _key(limit, identity)
        return await self.store.run("read a rate limit", lambda: self.store.storage.get(key))

    async def aclose(self) -> None:
        await self.store.aclose()


def _windows(checks: Sequence[tuple[Limit, str]]) -> list[_Window]:
    """One window per distinct (limit, identity), in the order given."""
    seen: dict[str, _Window] = {}
    for limit, identity in checks:
        key = _key(limit, identity)
        if key not in seen:
            seen[key] = _Window(limit, key)
    return list(seen.values())
