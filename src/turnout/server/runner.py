"""Running the gateway: the routers a config asks for, one server process or several workers
on one port, and a stop that lets requests in flight finish.

Heavy imports (the model runtime, the HTTP stack) happen inside the functions that need them,
so `turnout validate` stays quick.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from turnout.config import Config, load_config

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

    from turnout.governance.gate import Gate
    from turnout.providers.upstream import UpstreamPool
    from turnout.routing.decision import RoutingService
    from turnout.routing.examples import RouteExamples
    from turnout.routing.llm import LlmRouter

logger = logging.getLogger("turnout")

WORKER_CONFIG_VARIABLE = "TURNOUT_WORKER_CONFIG"
METRICS_DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own name


class StartupError(Exception):
    """The gateway cannot start on this config; the message says why."""


def routing_service(config: Config, pool: UpstreamPool) -> RoutingService:
    """The embedded router, indexed, and the LLM router when the config names one.

    With `routing.bootstrap`, the cached examples that fit the current routes are indexed
    before the first request; writing missing ones is `build_in_background`'s job, once serving.
    """
    from turnout.routing.decision import RoutingService
    from turnout.routing.embedded import EmbeddedRouter
    from turnout.routing.embedder import Embedder

    embedded = EmbeddedRouter(Embedder(config.embedded_router.threads))
    service = RoutingService(config, embedded, _llm_router(config, pool))
    examples = _cached_examples(config)
    if len(examples):
        service.use_examples(examples)  # indexes them; prepare() then finds the index built
    service.prepare()
    return service


def _cached_examples(config: Config) -> RouteExamples:
    """The route example cache's examples for these routes; an unreadable file stops the start,
    since serving without the examples an operator reviewed would route differently unnoticed."""
    from turnout.routing.example_cache import CacheError
    from turnout.routing.example_upkeep import cached_examples

    try:
        examples = cached_examples(config)
    except CacheError as exc:
        raise StartupError(f"routing.bootstrap.cache_path: {exc}") from exc
    if len(examples):
        logger.info("route examples: %d from the cache", len(examples))
    return examples


def _llm_router(config: Config, pool: UpstreamPool) -> LlmRouter | None:
    from turnout.providers.upstream import TargetError
    from turnout.routing.llm import LlmRouter

    if config.llm_router_model is None:
        return None
    try:
        router = LlmRouter(config, pool)
    except TargetError as exc:
        raise StartupError(f"overrides.llm_routing_model: {exc}") from exc
    if router.target.api != "openai_chat":
        raise StartupError(
            f"overrides.llm_routing_model: {router.model_id} must be served by an "
            "OpenAI-compatible endpoint (a vLLM, Ollama or llama.cpp server, say)"
        )
    return router


def serving_app(config: Config, service: RoutingService, pool: UpstreamPool) -> Starlette:
    """The app a server runs, with what start-up loaded (the router's model and index, the
    guards: ~70k objects) moved out of the garbage collector's way. A full collection walks
    them all (~55 ms here) whenever enough objects have lived long enough, which under load
    happens several times a second once spans wait in the export queue; frozen, they are
    never walked again (and never freed, which they would not be anyway)."""
    from turnout.server.app import create_app

    app = create_app(service, pool, gate(config, service, pool))
    gc.freeze()
    return app


def gate(config: Config, service: RoutingService, pool: UpstreamPool) -> Gate:
    """The governance gate, with its guard models loaded now: a broken one stops the start."""
    from turnout.governance.gate import build_gate
    from turnout.governance.injection import InjectionModelError

    try:
        return build_gate(config, service.router.embedder, pool)
    except InjectionModelError as exc:
        raise StartupError(f"the prompt-injection guard's model: {exc}") from exc


def describe_routers(service: RoutingService) -> str:
    threads = service.config.embedded_router.threads
    embedded = f"embedded (all-MiniLM-L6-v2 int8, {threads} thread(s))"
    llm = service.llm_router
    if llm is None:
        return embedded
    return (
        f"llm {llm.model_id} at {llm.target.url} ({llm.prompt.name} prompt, "
        f"{llm.timeout:g}s timeout), falling back to {embedded}"
    )


def bind(host: str, port: int) -> socket.socket:
    """Claim the port before the model loads, so a busy port fails at once and clearly."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on connections of a TCP-protocol socket.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    return listener


def _address(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    return f"http://{host}:{port}"


def _server_config(app: object, shutdown_grace: int, **options: object) -> uvicorn.Config:
    import uvicorn

    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_level="warning",
        timeout_graceful_shutdown=shutdown_grace,
        **options,  # type: ignore[arg-type]
    )


def serve(config: Config, listener: socket.socket, shutdown_grace: int, started: float) -> None:
    """One process: load the routers, then serve until SIGTERM or Ctrl-C."""
    import uvicorn

    from turnout.providers.upstream import UpstreamPool

    pool = UpstreamPool()
    service = routing_service(config, pool)
    routes = ", ".join(r.name for r in config.routing_preferences) or "none"
    logger.info("router: %s; routes: %s", describe_routers(service), routes)
    logger.info("ready in %.1fs on %s", time.perf_counter() - started, _address(listener))
    # uvicorn re-raises the signal that stopped it once it has shut down; SIGTERM is a clean stop.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server = uvicorn.Server(_server_config(serving_app(config, service, pool), shutdown_grace))
    server.run(sockets=[listener])


def serve_workers(
    config_path: str, listener: socket.socket, workers: int, shutdown_grace: int
) -> None:
    """`workers` processes accept on the one socket; each loads its own router (~290 MB)."""
    from uvicorn.supervisors import Multiprocess

    os.environ[WORKER_CONFIG_VARIABLE] = str(Path(config_path).resolve())
    server_config = _server_config(
        "turnout.server.runner:worker_app", shutdown_grace, factory=True, workers=workers
    )
    logger.info("starting %d workers on %s", workers, _address(listener))
    # Workers keep their metrics in files here, so /metrics on any worker sums them all; with
    # metrics off (the caller has validated the file) there is nothing to share.
    counting = load_config(config_path).observability.metrics
    with _metrics_directory() if counting else nullcontext():
        Multiprocess(server_config, sockets=[listener]).run()


@contextmanager
def _metrics_directory() -> Iterator[None]:
    if os.environ.get(METRICS_DIRECTORY_VARIABLE):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="turnout-metrics-") as directory:
        os.environ[METRICS_DIRECTORY_VARIABLE] = directory
        try:
            yield
        finally:
            del os.environ[METRICS_DIRECTORY_VARIABLE]


def worker_app() -> Starlette:
    """The app of one worker process, built from the config path its parent passed on."""
    from turnout.providers.upstream import UpstreamPool

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = load_config(os.environ[WORKER_CONFIG_VARIABLE])  # the parent logged its warnings
    pool = UpstreamPool()
    service = routing_service(config, pool)
    logger.info("worker %d: router %s", os.getpid(), describe_routers(service))
    return serving_app(config, service, pool)
