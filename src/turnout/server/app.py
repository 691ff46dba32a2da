"""The ASGI application: endpoints, and errors rendered in the caller's own API envelope."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from turnout.apis import API_FORMATS, ApiFormat
from turnout.apis.errors import RequestError
from turnout.config import Config
from turnout.governance.gate import Gate, build_gate
from turnout.observability.record import Kind
from turnout.observability.telemetry import Telemetry, Track
from turnout.providers.failover import Cooldowns
from turnout.providers.upstream import UpstreamPool
from turnout.routing.decision import RoutingService
from turnout.routing.example_upkeep import build_in_background
from turnout.routing.feedback import Feedback
from turnout.server.feedback_endpoint import feedback_endpoint
from turnout.server.proxy_endpoints import Proxy
from turnout.server.routing_endpoints import route_request

logger = logging.getLogger("turnout.server")
Handler = Callable[[Request, ApiFormat, Track], Awaitable[Response]]

PROXY_ENDPOINTS = {
    "/v1/chat/completions": "openai_chat",
    "/v1/messages": "anthropic_messages",
    "/v1/responses": "openai_responses",
}
ROUTING_ENDPOINTS = {
    "/routing/v1/chat/completions": "openai_chat",
    "/routing/v1/messages": "anthropic_messages",
    "/routing/v1/responses": "openai_responses",
}


def _api_for_path(path: str) -> ApiFormat:
    """Errors on Anthropic's paths use Anthropic's envelope; everything else OpenAI's."""
    name = "anthropic_messages" if path.rstrip("/").endswith("/messages") else "openai_chat"
    return API_FORMATS[name]


def _error_response(path: str, error: RequestError) -> JSONResponse:
    return JSONResponse(
        _api_for_path(path).error_body(error), status_code=error.status, headers=error.headers
    )


async def _request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return _error_response(request.url.path, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return _error_response(
        request.url.path, RequestError(message, status=exc.status_code, kind=kind)
    )


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    error = RequestError("internal error in turnout", status=500, kind="api_error")
    return _error_response(request.url.path, error)


def _models_body(config: Config) -> dict[str, object]:
    """OpenAI's model list shape, so SDKs' `models.list()` works against turnout."""
    entries = [(model_id, model_id.split("/", 1)[0]) for model_id in config.model_ids()]
    entries += [(alias, "turnout") for alias in config.model_aliases]
    return {
        "object": "list",
        "data": [{"id": i, "object": "model", "created": 0, "owned_by": o} for i, o in entries],
    }


def _readiness(service: RoutingService, pool: UpstreamPool) -> tuple[bool, dict[str, object]]:
    """Ready when the router is indexed and the upstream pool open. The LLM router's state is
    reported, not required: the embedded router stands in for it."""
    checks = {"router": service.prepared, "upstream_pool": not pool.closed}
    ready = all(checks.values())
    body: dict[str, object] = {"status": "ready" if ready else "not_ready", **checks}
    if service.llm_router is not None:
        body["llm_router"] = {
            "model": service.llm_router.model_id,
            "circuit": service.llm_router.breaker.state,
        }
    return ready, body


def create_app(
    service: RoutingService,
    pool: UpstreamPool | None = None,
    gate: Gate | None = None,
    telemetry: Telemetry | None = None,
) -> Starlette:
    """`pool` is shared with the LLM router when there is one; the app closes it on shutdown.
    `gate` and `telemetry` default to what the config asks for; the metrics path is served
    only when `telemetry`'s metrics count (not a NoMetrics)."""
    config = service.config
    limit = config.max_body_bytes
    pool = pool or UpstreamPool()
    gate = gate or build_gate(config, service.router.embedder, pool)
    telemetry = telemetry or Telemetry.from_config(config)
    gate.limiter.store.count_unavailable_with(telemetry.metrics.ratelimit_storage_unavailable)
    feedback = Feedback(service)

    def tracked(
        path: str, api: ApiFormat, kind: Kind, handle: Handler
    ) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint for `path`: every request gets a record and a trace, closed when the
        client has the answer."""

        async def endpoint(request: Request) -> Response:
            track = telemetry.open(path, api.name, kind, request.headers)
            try:
                response = await handle(request, api, track)
            except RequestError as exc:
                track.fail(exc)
                track.record.rejection = exc.rejection  # type: ignore[assignment]
                response = _error_response(path, exc)
            except Exception as exc:
                track.fail(exc)
                track.close(500)
                raise
            return track.respond(response)

        return endpoint

    async def metrics(request: Request) -> Response:
        body, content_type = telemetry.metrics.exposition()
        return Response(body, media_type=content_type)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "router": service.router_kind})

    async def readyz(request: Request) -> JSONResponse:
        ready, body = _readiness(service, pool)
        return JSONResponse(body, status_code=200 if ready else 503)

    async def models(request: Request) -> JSONResponse:
        return JSONResponse(_models_body(config))

    async def decide(request: Request, api: ApiFormat, track: Track) -> Response:
        return await route_request(request, api, service, feedback, gate, limit, track)

    proxy = Proxy(service, pool, Cooldowns(), gate, feedback)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if gate.is_open:
            logger.warning("no client keys are configured: anyone who can reach turnout may use it")
        await feedback.start()
        building = asyncio.create_task(build_in_background(service, config, pool))
        yield
        building.cancel()
        await feedback.stop()
        await gate.aclose()
        await pool.aclose()
        await asyncio.to_thread(telemetry.shutdown)

    routes = [
        Route(path, tracked(path, API_FORMATS[name], "decision", decide), methods=["POST"])
        for path, name in ROUTING_ENDPOINTS.items()
    ]
    routes += [
        Route(path, tracked(path, API_FORMATS[name], "proxy", proxy.handle), methods=["POST"])
        for path, name in PROXY_ENDPOINTS.items()
    ]
    routes += [
        Route("/routing/v1/feedback", feedback_endpoint(feedback, gate), methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/v1/models", models),
    ]
    if telemetry.metrics.served:  # else (observability.metrics: false) the path is a 404
        routes.append(Route(config.observability.metrics_path, metrics))
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            RequestError: _request_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
    )
