"""`/routing/v1/*`: the routing decision alone, in each client API's request format."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from turnout.apis import ApiFormat
from turnout.governance.gate import Gate
from turnout.observability.telemetry import Track
from turnout.routing.decision import Decision, RoutingService
from turnout.routing.feedback import Feedback
from turnout.server.body import read_json
from turnout.server.stages import decided, governed

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
    if decision.confidence is not None:
        body["confidence"] = decision.confidence
    if decision.escalated:
        body["escalated"] = True
    if explain:
        body.update(
            reason=decision.reason,
            scores=decision.scores,
            latency_ms=round(decision.latency_ms, 3),
        )
    return body


async def route_request(
    request: Request,
    api: ApiFormat,
    service: RoutingService,
    feedback: Feedback,
    gate: Gate,
    max_body_bytes: int,
    track: Track,
) -> JSONResponse:
    """The decision, after the governance stage: keys, limits and input guards apply here too,
    and the models are those the caller may use."""
    body = await read_json(request, max_body_bytes)
    routing_request = api.parse_routing_request(body)
    assert isinstance(body, dict)  # parse_routing_request refuses anything else
    track.record.requested_model = routing_request.model
    admitted = await governed(gate, track, request, api, body, routing_request)
    decision = await decided(service, feedback, track, routing_request)
    config = service.config
    own = config.resolve_model(routing_request.model) if routing_request.model else None
    # A permitted route answers its models alone; otherwise the request's own (or default) model.
    routed = decision.route is not None and gate.route_permitted(admitted, decision.route)
    models = gate.allowed(admitted, decision, None if routed else own or config.default_model)
    explain = request.query_params.get("explain", "").lower() in _EXPLAIN_VALUES
    trace_id = track.record.trace_id
    return JSONResponse(
        decision_body(replace(decision, models=models), trace_id, explain),
        headers={"x-request-id": trace_id, **admitted.headers},
    )
