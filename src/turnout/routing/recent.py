"""What feedback shares between replicas: recent decisions, so that a correction can name a
decision by its trace id instead of resending the conversation; the corrections themselves in
Redis; and the Redis link both go through.

Only the text that decided the route is kept: the latest user turn, cut to what the encoder reads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from functools import partial
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from turnout.governance.ratelimit import (
    DEFAULT_TIMEOUT,
    KEY_PREFIX,
    failure_reason,
    redact_url,
    redis_pool,
)
from turnout.routing.conversation import Turn
from turnout.routing.embedder import MAX_CHARS

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

T = TypeVar("T")
Assignment = tuple[str, str | None]  # a corrected text as sent, and its route (None: no route)

RECENT_PREFIX = f"{KEY_PREFIX}:recent:"
FEEDBACK_KEY = f"{KEY_PREFIX}:feedback:examples"
VERSION_KEY = f"{KEY_PREFIX}:feedback:version"
MAX_ENTRIES = 10_000
TTL_SECONDS = 3600
MAX_TRACE_ID_CHARS = 128
_WRITE_QUEUE = 10_000  # decisions waiting to reach Redis; past it they are dropped, not awaited
_WRITE_BATCH = 200


def example_text(turns: Sequence[Turn]) -> str | None:
    """The latest user turn, as the router classified it; None when there is no user text.

    Cut to the characters the encoder reads, so an example costs no more than it is worth."""
    texts = [turn.text.strip() for turn in turns if turn.role == "user" and turn.text.strip()]
    return texts[-1][:MAX_CHARS] if texts else None


class SharedStateUnavailable(Exception):
    """Redis did not answer (in time); what is loaded keeps serving."""


class RedisLink:
    """One Redis client for routing state: every call bounded by `timeout`, each failure counted,
    and an outage logged once (with the URL's password scrubbed) until Redis answers again."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        import redis.asyncio
        from redis.exceptions import RedisError

        self.client: Redis = redis.asyncio.Redis.from_pool(redis_pool(url, timeout))
        self.description = f"routing state storage {redact_url(url)}"
        self.timeout = timeout
        self.unavailable_events = 0
        self._secret = urlsplit(url).password
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
        self._down = False

    async def run(self, what: str, operation: Callable[[Redis], Awaitable[T]]) -> T:
        """`operation`'s result, or SharedStateUnavailable when Redis failed or was too slow."""
        try:
            async with asyncio.timeout(self.timeout * 2):
                result = await operation(self.client)
        except self._errors as exc:
            self.unavailable_events += 1
            if not self._down:
                self._down = True
                log.warning(
                    "%s unavailable while trying to %s (%s); serving with the examples loaded",
                    self.description,
                    what,
                    failure_reason(exc, self._secret),
                )
            raise SharedStateUnavailable(f"{self.description} unavailable") from exc
        if self._down:
            self._down = False
            log.warning("%s reachable again", self.description)
        return result

    async def aclose(self) -> None:
        await self.client.aclose()


class RecentDecisions:
    """Trace id → the text that was routed, for the last `max_entries` decisions within `ttl`
    seconds. With Redis the entries are also written there (in the background: a decision never
    waits for Redis), so the replica that receives feedback need not be the one that decided."""

    def __init__(
        self,
        redis: RedisLink | None = None,
        *,
        max_entries: int = MAX_ENTRIES,
        ttl: int = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.max_entries = max_entries
        self.ttl = ttl
        self.dropped = 0  # entries that never reached Redis (queue full or Redis down)
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._queue: asyncio.Queue[tuple[str, str]] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._warned_full = False

    def remember(self, trace_id: str, text: str) -> None:
        """Cheap and synchronous: a dict insert, and a queue put when Redis is configured."""
        now = self._clock()
        self._entries.pop(trace_id, None)
        self._entries[trace_id] = (now + self.ttl, text)
        while self._entries and (
            len(self._entries) > self.max_entries or next(iter(self._entries.values()))[0] <= now
        ):
            self._entries.popitem(last=False)
        if self._queue is None:
            return
        try:
            self._queue.put_nowait((trace_id, text))
        except asyncio.QueueFull:
            self.dropped += 1
            if not self._warned_full:
                self._warned_full = True
                log.warning("recent decisions are reaching Redis too slowly; dropping some")

    async def lookup(self, trace_id: str) -> str | None:
        """The text, from this process or Redis; None when unknown or expired.
        Raises SharedStateUnavailable when only Redis could have answered and it did not."""
        entry = self._entries.get(trace_id)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        if self.redis is None:
            return None
        key = RECENT_PREFIX + trace_id
        raw = await self.redis.run("look up a recent decision", lambda r: r.get(key))
        return raw.decode("utf-8") if isinstance(raw, bytes) else raw

    def start(self) -> None:
        """Begin writing to Redis (in the running event loop)."""
        if self.redis is not None and self._writer is None:
            self._queue = asyncio.Queue(_WRITE_QUEUE)
            self._writer = asyncio.create_task(self._write_forever(self.redis, self._queue))

    async def stop(self) -> None:
        writer, self._writer, self._queue = self._writer, None, None
        if writer is not None:
            writer.cancel()
            with suppress(asyncio.CancelledError):
                await writer

    async def _write_forever(self, redis: RedisLink, queue: asyncio.Queue[tuple[str, str]]) -> None:
        while True:
            batch = dict([await queue.get()])
            while len(batch) < _WRITE_BATCH and not queue.empty():
                trace_id, text = queue.get_nowait()
                batch[trace_id] = text
            try:
                await redis.run("remember decisions", partial(_write, batch=batch, ttl=self.ttl))
            except SharedStateUnavailable:
                self.dropped += len(batch)
            else:
                self._warned_full = False


async def _write(client: Redis, batch: dict[str, str], ttl: int) -> None:
    async with client.pipeline(transaction=False) as pipe:
        for trace_id, text in batch.items():
            pipe.set(RECENT_PREFIX + trace_id, text, ex=ttl)
        await pipe.execute()


# ---- feedback in Redis: a hash of normalised text → {text, route}, and a version counter


async def read_feedback_version(client: Redis) -> int:
    return int(await client.get(VERSION_KEY) or 0)


async def put_feedback(client: Redis, key: str, text: str, route: str | None) -> int:
    value = json.dumps({"text": text, "route": route})
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(FEEDBACK_KEY, key, value)
        pipe.incr(VERSION_KEY)
        _, version = await pipe.execute()
    return int(version)


async def read_feedback(client: Redis) -> tuple[int, dict[str, Assignment]]:
    async with client.pipeline(transaction=True) as pipe:
        pipe.get(VERSION_KEY)
        pipe.hgetall(FEEDBACK_KEY)
        version, raw = await pipe.execute()
    shared: dict[str, Assignment] = {}
    for key, value in raw.items():
        try:
            entry = json.loads(value)
            text, route = entry["text"], entry["route"]
        except (ValueError, TypeError, KeyError):
            continue  # not ours, or hand-edited badly: skip it rather than stop syncing
        if isinstance(text, str) and text.strip() and (route is None or isinstance(route, str)):
            shared[key.decode("utf-8") if isinstance(key, bytes) else str(key)] = (text, route)
    return int(version or 0), shared
