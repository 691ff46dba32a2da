"""Keeping the route example cache current: read at start-up, written in the background when
the routes or the writing model changed, written on demand by `turnout routes bootstrap`.

Only one process writes: with `turnout up --workers N` every worker starts the build, and the
one holding `<cache_path>.lock` pays for the LLM call; the others pick the file up through the
feedback sync, which reloads it when it changes.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from turnout.config import Config
from turnout.providers.upstream import UpstreamPool
from turnout.routing.bootstrap import (
    DEFAULT_NO_ROUTE,
    DEFAULT_PER_ROUTE,
    BootstrapError,
    resolve_model,
    write_examples,
)
from turnout.routing.example_cache import CacheError, CacheFile, cache_key, read_cache, write_cache
from turnout.routing.examples import RouteExamples

if TYPE_CHECKING:
    from turnout.routing.decision import RoutingService

logger = logging.getLogger("turnout.bootstrap")


def cache_path(config: Config) -> Path | None:
    """`routing.bootstrap.cache_path`, relative to the working directory like the config path."""
    settings = config.routing.bootstrap
    return Path(settings.cache_path) if settings else None


def current_key(config: Config, cache: CacheFile) -> str | None:
    """The key the cache's written examples must carry to be used with these routes.

    With `routing.bootstrap.model` set it is that model's; without one (never build), examples
    that any model wrote for exactly these routes are used, so a file written by
    `turnout routes bootstrap --model ...` serves as long as the routes do not change.
    """
    settings = config.routing.bootstrap
    name = settings.model if settings and settings.model else cache.model
    model_id = (config.resolve_model(name) or name) if name else None
    return cache_key(config.routing_preferences, model_id) if model_id else None


def cached_examples(config: Config) -> RouteExamples:
    """What the cache holds for the current routes (raises CacheError for an unreadable file)."""
    path = cache_path(config)
    if path is None:
        return RouteExamples()
    cache = read_cache(path)
    return cache.examples_for(current_key(config, cache))


async def bootstrap_cache(
    config: Config,
    pool: UpstreamPool,
    path: Path,
    model: str,
    per_route: int = DEFAULT_PER_ROUTE,
    no_route: int = DEFAULT_NO_ROUTE,
    timeout: float | None = None,
) -> CacheFile:
    """Write examples with `model` and store them at `path`, keeping the file's feedback."""
    model_id = resolve_model(config, model)
    read_cache(path)  # an unreadable file fails now, before the LLM call is paid for
    examples = await write_examples(config, pool, model_id, per_route, no_route, timeout=timeout)
    return _store(path, _written(config, model_id, examples))


def _written(config: Config, model_id: str, examples: RouteExamples) -> CacheFile:
    return CacheFile(
        key=cache_key(config.routing_preferences, model_id),
        model=model_id,
        bootstrapped=examples,
    )


def _store(path: Path, cache: CacheFile) -> CacheFile:
    """`cache` written to `path` with the feedback the file holds now: corrections may have
    arrived while the model was writing, and they must not be lost."""
    stored = replace(cache, feedback=read_cache(path).feedback)
    write_cache(path, stored)
    return stored


async def _build(
    service: RoutingService, config: Config, pool: UpstreamPool, path: Path, model_id: str
) -> None:
    settings = config.routing.bootstrap
    assert settings is not None
    logger.info(
        "route examples: asking %s for %d per route; routing zero-shot meanwhile",
        model_id,
        settings.per_route,
    )
    examples = await write_examples(config, pool, model_id, settings.per_route, settings.no_route)
    cache = replace(_written(config, model_id, examples), feedback=read_cache(path).feedback)
    # In use first, then stored: whatever reloads the file when it changes (the feedback sync,
    # which also merges corrections shared through Redis) then has the last word.
    await _use(service, cache.examples_for(cache.key))
    _store(path, cache)
    logger.info("route examples: %s written", path)


async def _use(service: RoutingService, examples: RouteExamples) -> None:
    """Swap `examples` in, unless the service already routes with exactly them."""
    if service.configured.with_examples(examples) != service.route_set:
        await asyncio.to_thread(service.use_examples, examples)
        logger.info("route examples: %d in use", len(examples))


@contextmanager
def _build_lock(path: Path) -> Iterator[bool]:
    """Whether this process may build: with `turnout up --workers N` every worker starts the
    build, and only the one holding `<cache_path>.lock` pays for the LLM call."""
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(handle)  # closing releases the lock


async def build_in_background(service: RoutingService, config: Config, pool: UpstreamPool) -> None:
    """At start-up: when the cache holds no examples for the current routes and model, write
    them while the router serves zero-shot, then swap them in.

    Runs as a task beside the server, so it never raises: a failure is logged and the router
    goes on without the examples, as it would with no bootstrap configured. Only the process
    that writes the file swaps the examples in; other workers pick the file up through the
    feedback sync, which reloads it when it changes and merges the corrections it holds.
    """
    settings = config.routing.bootstrap
    if settings is None or settings.model is None or not config.routing_preferences:
        return
    path = Path(settings.cache_path)
    try:
        model_id = resolve_model(config, settings.model)
        key = cache_key(config.routing_preferences, model_id)
        if read_cache(path).key == key:
            return  # start-up found them, or the file's watcher (the feedback sync) will
        with _build_lock(path) as building:
            if not building:
                logger.info("route examples: another process is writing %s", path)
            elif read_cache(path).key != key:  # another process may have just written them
                await _build(service, config, pool, path, model_id)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if pool.closed:
            logger.info("route examples: build stopped by shutdown")
        elif isinstance(exc, BootstrapError | CacheError):
            logger.error("route examples not built: %s", exc)
        else:
            logger.exception("route examples not built")
