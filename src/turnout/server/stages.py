"""The stages both kinds of endpoint share, each in its own trace span and written to the
request's record: the governance gate, then the routing decision."""

from __future__ import annotations

from starlette.requests import Request

from turnout.apis import ApiFormat
from turnout.governance.gate import Admitted, Gate
from turnout.observability.telemetry import Track
from turnout.observability.tracing import SPAN_GUARDRAILS, SPAN_ROUTING
from turnout.routing.conversation import RoutingRequest
from turnout.routing.decision import Decision, RoutingService
from turnout.routing.feedback import Feedback


async def governed(
    gate: Gate,
    track: Track,
    request: Request,
    api: ApiFormat,
    body: dict,
    routing_request: RoutingRequest,
) -> Admitted:
    step = track.begin(SPAN_GUARDRAILS)
    admitted = await gate.admit(
        request.headers, api.name, body, routing_request.turns, track.inject({}, step)
    )
    track.end(step)
    record = track.record
    record.client_key = admitted.caller.name if admitted.caller else None
    record.guard_events = admitted.events  # output guards add to the same list later
    return admitted


async def decided(
    service: RoutingService, feedback: Feedback, track: Track, routing_request: RoutingRequest
) -> Decision:
    step = track.begin(SPAN_ROUTING)
    decision = await service.decide(routing_request)
    track.decided(decision, step)
    track.end(step)
    feedback.remember(track.record.trace_id, routing_request)
    return decision
