"""`/routing/v1/*`: the routing decision alone, in each client API's request format."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from turnout.apis import ApiFormat
from turnout.routing.decision import Decision, RoutingService
from turnout.server.body import read_json
from turnout.server.trace_context import trace_id_from

_EXPLAIN_VALUES = {"1", "true", "yes"}


def decision_body(decision: Decision, trace_id: str, explain: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "models": decision.models,
        "route": decision.route,
        "trace_id": trace_id,
        "router": decision.router,
    }
    if decision.router_fallback is not None:
        body["router_fallback"] = decision.router_fallback
    if explain:
        body.update(
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
    decision = await service.decide(routing_request)
    explain = request.query_params.get("explain", "").lower() in _EXPLAIN_VALUES
    return JSONResponse(
        decision_body(decision, trace_id, explain), headers={"x-request-id": trace_id}
    )
