"""OpenAI Chat Completions (`POST /v1/chat/completions`): request reading and error envelope.

The error envelope is also the Responses API's: both are OpenAI's.
"""

from __future__ import annotations

from typing import Any

from turnout.apis import content
from turnout.apis.errors import RequestError
from turnout.routing.conversation import Role, RoutingRequest, Turn

_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}
_TEXT_PARTS = frozenset({"text"})

# OpenAI's own (type, code) for each shared error kind. OpenAI reports most client errors,
# 401 and 404 included, as `invalid_request_error` and tells them apart by `code`.
_OPENAI_ERRORS: dict[str, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    "authentication_error": ("invalid_request_error", "invalid_api_key"),
    "permission_error": ("invalid_request_error", "permission_denied"),
    "not_found_error": ("invalid_request_error", "not_found"),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "rate_limit_error": ("rate_limit_exceeded", "rate_limit_exceeded"),
    "api_error": ("server_error", None),
    "overloaded_error": ("server_error", "overloaded"),
}


def parse_routing_request(body: object) -> RoutingRequest:
    """Reduce a Chat Completions request body to what routing reads."""
    return content.routing_request(body, _turns)


def _turns(body: content.JsonObject) -> list[Turn]:
    messages = content.non_empty_list(body.get("messages"), "messages")
    return [_turn(message, path) for path, message in content.objects(messages, "messages")]


def _turn(message: content.JsonObject, path: str) -> Turn:
    role = content.role(message, path, _ROLES)
    value = message.get("content")
    if value is None and role == "assistant":  # an assistant turn made only of tool_calls
        return Turn(role, "")
    return Turn(role, content.text(value, f"{path}.content", _TEXT_PARTS))


def error_body(error: RequestError) -> dict[str, Any]:
    """`{"error": {"message", "type", "param", "code"}}`, OpenAI's error object."""
    fallback = ("server_error" if error.status >= 500 else "invalid_request_error", error.kind)
    kind, code = _OPENAI_ERRORS.get(error.kind, fallback)
    return {"error": {"message": error.message, "type": kind, "param": error.param, "code": code}}
