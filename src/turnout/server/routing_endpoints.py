"""`/routing/v1/*`: the routing decision alone, in each client API's request format."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from turnout.apis import ApiFormat
from turnout.routing.conversation import RoutingRequest
from turnout.routing.decision import Decision, RoutingService
from turnout.server.body import read_json
from turnout.server.trace_context import trace_id_from

_EXPLAIN_VALUES = {"1", "true", "yes"}


async def decide(service: RoutingService, request: RoutingRequest) -> Decision:
    """Classifying embeds text, so it runs off the event loop; with no routes there is no work."""
    routes = service.routes_for(request)
    if not routes:
        return service.decide_among(request, routes)
    return await run_in_threadpool(service.decide_among, request, routes)


def decision_body(decision: Decision, trace_id: str, explain: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "models": decision.models,
        "route": decision.route,
        "trace_id": trace_id,
    }
    if explain:
        body.update(
            router=decision.router,
            reason=decision.reason,
            scores=decision.scores,
            latency_ms=round(decision.latency_ms, 3),
        )
    return body


async def route_request(
    request: Request, api: ApiFormat, service: RoutingService, max_body_bytes: int
) -> JSONResponse:
    trace_id = trace_id_from(request.headers.get("traceparent"))
    routing_request = api.parse_routing_request(await read_json(request, max_body_bytes))
    decision = await decide(service, routing_request)
    explain = request.query_params.get("explain", "").lower() in _EXPLAIN_VALUES
    return JSONResponse(
        decision_body(decision, trace_id, explain), headers={"x-request-id": trace_id}
    )
