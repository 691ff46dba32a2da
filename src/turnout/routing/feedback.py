"""Route corrections sent to `/routing/v1/feedback`: each becomes an example of the right route
(or of no route), is persisted, and takes effect without a restart.

Where corrections live: the example cache file's `feedback` section (`routing.bootstrap.
cache_path`; without one, this process's memory), and with Redis storage also a Redis hash
(normalised text → text and route) with a version counter. A background loop per process
polls the counter and the file's identity every few seconds, so other replicas, other workers
sharing the file, and a bootstrap that rewrites it are all picked up. Redis is the newest word
on a text; the file keeps what this replica was told. A text corrected to one route leaves every
other route's feedback and written examples.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path

from turnout.apis.errors import RequestError
from turnout.routing.conversation import RoutingRequest
from turnout.routing.decision import RoutingService
from turnout.routing.example_cache import CacheError, CacheFile, read_cache, write_cache
from turnout.routing.example_upkeep import cache_path, current_key
from turnout.routing.examples import RouteExamples, normalised
from turnout.routing.recent import (
    Assignment,
    RecentDecisions,
    RedisLink,
    SharedStateUnavailable,
    example_text,
    put_feedback,
    read_feedback,
    read_feedback_version,
)

log = logging.getLogger(__name__)

SYNC_SECONDS = 2.0

FileIdentity = tuple[int, int, int]  # inode, mtime in ns, size: a replaced file always differs


def assignments(examples: RouteExamples) -> dict[str, Assignment]:
    found: dict[str, Assignment] = {}
    for name, texts in examples.routes.items():
        for text in texts:
            found[normalised(text)] = (text, name)
    for text in examples.no_route:
        found[normalised(text)] = (text, None)
    return found


def as_examples(assigned: Mapping[str, Assignment]) -> RouteExamples:
    routes: dict[str, list[str]] = {}
    no_route: list[str] = []
    for text, route in assigned.values():
        (no_route if route is None else routes.setdefault(route, [])).append(text)
    return RouteExamples({name: tuple(texts) for name, texts in routes.items()}, tuple(no_route))


def corrected(examples: RouteExamples, text: str, route: str | None) -> RouteExamples:
    """`examples` with `text` under `route` only; unchanged when it already was."""
    assigned = assignments(examples)
    key = normalised(text)
    if key in assigned and assigned[key][1] == route:
        return examples
    assigned[key] = (text, route)
    return as_examples(assigned)


def merged(cache: CacheFile, key: str | None, shared: Mapping[str, Assignment]) -> RouteExamples:
    """The examples to route with: the file's corrections overridden by the shared ones, then
    the written examples (when still valid for `key`) minus every corrected text."""
    assigned = {**assignments(cache.feedback), **shared}
    feedback = as_examples(assigned)
    if key is None or key != cache.key:
        return feedback
    written = cache.bootstrapped
    kept = RouteExamples(
        routes={
            name: tuple(t for t in texts if normalised(t) not in assigned)
            for name, texts in written.routes.items()
        },
        no_route=tuple(t for t in written.no_route if normalised(t) not in assigned),
    )
    return feedback.plus(kept)


def file_identity(path: Path) -> FileIdentity | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


@dataclass(frozen=True, slots=True)
class Applied:
    route: str | None
    text: str
    examples: int  # the route's examples now in use (no route: the no-route examples)


class Feedback:
    """The corrections of one RoutingService, and the loop that keeps it in step with them."""

    def __init__(self, service: RoutingService, *, sync_seconds: float = SYNC_SECONDS) -> None:
        config = service.config
        storage = config.governance.storage
        self.service = service
        self.sync_seconds = sync_seconds
        self.cache_path = cache_path(config)
        self.redis = RedisLink(storage.url) if storage.type == "redis" and storage.url else None
        # Without an admin key nobody may send feedback, so request texts are not kept at all.
        self.accepting = any(key.admin for key in config.governance.client_keys)
        self.recent = RecentDecisions(self.redis) if self.accepting else None
        self._memory = RouteExamples()  # the corrections, when there is no cache file
        self._shared: dict[str, Assignment] = {}  # Redis's corrections, as last read
        self._seen: tuple[FileIdentity | None, int | None] | None = None  # file, Redis version
        self._lock = asyncio.Lock()
        self._loop: asyncio.Task[None] | None = None
        self._cache_problem: str | None = None  # why the file was last unreadable, if it was
        self._last_cache = CacheFile()

    @property
    def route_names(self) -> list[str]:
        return [route.name for route in self.service.configured.routes]

    def remember(self, trace_id: str, request: RoutingRequest) -> None:
        """Called for every decision. One against inline routes is not kept: a correction can
        only name a configured route."""
        if self.recent is None or request.routing_preferences is not None:
            return
        text = example_text(request.turns)
        if text is not None:
            self.recent.remember(trace_id, text)

    async def text_of(self, trace_id: str) -> str | None:
        """The text a recent decision routed, None when unknown or expired."""
        if self.recent is None:
            return None
        return await self.recent.lookup(trace_id)

    def check_route(self, route: object) -> str | None:
        """`route` when it names a configured route or is None; else a 400 listing the names."""
        names = self.route_names
        if route is None or (isinstance(route, str) and route in names):
            return route
        listed = ", ".join(names) or "(none configured)"
        raise RequestError(
            f"unknown route {route!r}: use one of {listed}, or null for no route", param="route"
        )

    async def correct(self, text: str, route: str | None) -> Applied:
        """Make `text` an example of `route` (None: of no route) in Redis, in the file, and in
        the routes used from now on. With Redis unreachable nothing changes (503), so that no
        replica is left disagreeing with the others."""
        self.check_route(route)
        async with self._lock:
            if self.cache_path is not None:  # a broken file fails before anything changed
                await asyncio.to_thread(self._read, self.cache_path, strict=True)
            if self.redis is not None:
                await self._share(text, route)
            if self.cache_path is None:
                self._memory = corrected(self._memory, text, route)
            else:
                await asyncio.to_thread(self._correct_file, self.cache_path, text, route)
            await self._apply(read_shared=False)
        routes = self.service.route_set
        if route is None:
            count = len(routes.no_route_examples)
        else:
            count = next(len(r.examples) for r in routes.routes if r.name == route)
        return Applied(route, text, count)

    async def refresh(self) -> None:
        """Re-read and re-apply the corrections when the file or Redis's version changed."""
        async with self._lock:
            identity = (
                await asyncio.to_thread(file_identity, self.cache_path) if self.cache_path else None
            )
            version = self._seen[1] if self._seen else None
            if self.redis is not None:
                with suppress(SharedStateUnavailable):
                    version = await self.redis.run("poll feedback", read_feedback_version)
            if self._seen != (identity, version):
                await self._apply(read_shared=True)

    async def start(self) -> None:
        """Start the recent-decision writer and the sync loop (its first pass runs at once)."""
        if self.recent is not None:
            self.recent.start()
        if self._loop is None and (self.cache_path or self.redis):
            self._loop = asyncio.create_task(self._sync_forever())

    async def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
            with suppress(asyncio.CancelledError):
                await loop
        if self.recent is not None:
            await self.recent.stop()
        if self.redis is not None:
            await self.redis.aclose()

    async def _sync_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # a bug must not end the loop: the next pass tries again
                log.exception("route feedback sync failed")
            await asyncio.sleep(self.sync_seconds)

    async def _share(self, text: str, route: str | None) -> None:
        assert self.redis is not None
        key = normalised(text)
        try:
            version = await self.redis.run(
                "share feedback", lambda r: put_feedback(r, key, text, route)
            )
        except SharedStateUnavailable:
            raise RequestError(
                "the shared routing state (Redis) is unavailable; the correction was not "
                "applied, try again",
                status=503,
                kind="api_error",
            ) from None
        self._shared[key] = (text, route)
        if self._seen is not None and self._seen[1] == version - 1:
            self._seen = (self._seen[0], version)  # only ours since the last read: nothing new

    def _correct_file(self, path: Path, text: str, route: str | None) -> None:
        """Read, correct, write, holding `<cache_path>.feedback.lock`: workers sharing the file
        may receive feedback at the same moment, and neither correction may be lost."""
        lock = path.with_name(path.name + ".feedback.lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            cache = self._read(path, strict=True)
            feedback = corrected(cache.feedback, text, route)
            if feedback != cache.feedback:
                write_cache(path, replace(cache, feedback=feedback))
        finally:
            os.close(handle)  # closing releases the lock

    def _read(self, path: Path, *, strict: bool) -> CacheFile:
        """The cache file. A broken one is refused when it is about to be rewritten (strict), so
        an operator's typo never costs their examples; otherwise logged once, and the last good
        contents stay in use until the file changes again."""
        try:
            cache = read_cache(path)
        except CacheError as exc:
            if strict:
                raise RequestError(
                    f"the example cache cannot be updated: {exc}", status=500, kind="api_error"
                ) from exc
            if self._cache_problem != str(exc):
                self._cache_problem = str(exc)
                log.warning("route examples not reloaded: %s", exc)
            return self._last_cache
        self._cache_problem = None
        self._last_cache = cache
        return cache

    async def _apply(self, *, read_shared: bool) -> None:
        """Under the lock: load the corrections, and re-index when they change the routes."""
        path = self.cache_path
        identity = await asyncio.to_thread(file_identity, path) if path else None
        version = self._seen[1] if self._seen else None
        if read_shared and self.redis is not None:
            with suppress(SharedStateUnavailable):
                version, self._shared = await self.redis.run("read feedback", read_feedback)
        if path is None:
            cache = CacheFile(feedback=self._memory)
        else:
            cache = await asyncio.to_thread(self._read, path, strict=False)
        self._seen = (identity, version)
        service = self.service
        examples = merged(cache, current_key(service.config, cache), self._shared)
        if service.configured.with_examples(examples) != service.route_set:
            await asyncio.to_thread(service.use_examples, examples)
