"""`POST /routing/v1/feedback`: an admin's correction of a decision, by its trace id or by the
conversation itself, applied to routing at once (see turnout.routing.feedback)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from turnout.apis import API_FORMATS
from turnout.apis.errors import RequestError
from turnout.governance.gate import Gate
from turnout.routing.feedback import Feedback
from turnout.routing.recent import (
    MAX_ENTRIES,
    MAX_TRACE_ID_CHARS,
    TTL_SECONDS,
    SharedStateUnavailable,
    example_text,
)
from turnout.server.body import read_json


def feedback_endpoint(feedback: Feedback, gate: Gate) -> Callable[[Request], Awaitable[Response]]:
    limit = feedback.service.config.max_body_bytes

    async def endpoint(request: Request) -> Response:
        authorize(gate, request.headers)  # before the body is read: strangers cost nothing
        body = await read_json(request, limit)
        text, route = await correction(feedback, body)
        applied = await feedback.correct(text, route)
        return JSONResponse(
            {"route": applied.route, "text": applied.text, "examples": applied.examples}
        )

    return endpoint


def authorize(gate: Gate, headers: Mapping[str, str]) -> None:
    """Only an admin key may rewrite routing for everyone; an open gateway has none, so there
    feedback is refused rather than open to anyone who can reach turnout."""
    if gate.is_open:
        raise _forbidden(
            "Routing feedback needs an admin client key, and this gateway has no client keys: "
            "add one with `admin: true` under governance.client_keys."
        )
    caller = gate.keys.authenticate(headers)  # 401 for a missing or unknown key
    if caller is None or not caller.settings.admin:
        name = caller.name if caller else "?"
        raise _forbidden(
            f"The key '{name}' may not send routing feedback: that needs a key with `admin: true`."
        )


async def correction(feedback: Feedback, body: object) -> tuple[str, str | None]:
    """The text to learn from and its route, or a 400/404 saying what is wrong."""
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.")
    if "route" not in body:
        raise RequestError(
            "`route` is required: the name of the right route, or null for no route.",
            param="route",
        )
    route = feedback.check_route(body["route"])
    trace_id, messages = body.get("trace_id"), body.get("messages")
    if (trace_id is None) == (messages is None):
        raise RequestError(
            "Give either `trace_id` (of a recent decision) or `messages` (the conversation), "
            + ("not both." if trace_id is not None else "one of them is required."),
            param="trace_id",
        )
    if trace_id is not None:
        return await _recent_text(feedback, trace_id), route
    turns = API_FORMATS["openai_chat"].parse_routing_request({"messages": messages}).turns
    text = example_text(turns)
    if text is None:
        raise RequestError("`messages` has no user text to learn from.", param="messages")
    return text, route


async def _recent_text(feedback: Feedback, trace_id: object) -> str:
    if not isinstance(trace_id, str) or not trace_id.strip():
        raise RequestError("`trace_id` must be a non-empty string.", param="trace_id")
    if len(trace_id) > MAX_TRACE_ID_CHARS:
        raise RequestError(
            f"`trace_id` is longer than {MAX_TRACE_ID_CHARS} characters.", param="trace_id"
        )
    try:
        text = await feedback.text_of(trace_id.strip())
    except SharedStateUnavailable:
        raise RequestError(
            "Recent decisions are kept in Redis, which is unavailable; send `messages` instead.",
            status=503,
            kind="api_error",
        ) from None
    if text is None:
        raise RequestError(
            f"No recent decision has the trace id '{trace_id}': decisions are kept for "
            f"{TTL_SECONDS // 60} minutes (the last {MAX_ENTRIES:,} per process); "
            "send `messages` instead.",
            status=404,
            kind="not_found_error",
            param="trace_id",
        )
    return text


def _forbidden(message: str) -> RequestError:
    return RequestError(message, status=403, kind="permission_error", rejection="permission")
