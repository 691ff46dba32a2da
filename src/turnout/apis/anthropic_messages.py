"""Anthropic Messages (`POST /v1/messages`): request reading and error envelope."""

from __future__ import annotations

from typing import Any

from turnout.apis import content
from turnout.apis.errors import RequestError
from turnout.routing.conversation import Role, RoutingRequest, Turn

_ROLES: dict[str, Role] = {"user": "user", "assistant": "assistant"}
_TEXT_BLOCKS = frozenset({"text"})

# The shared error vocabulary is Anthropic's own, so kinds pass through unchanged.
_ANTHROPIC_ERRORS = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "overloaded_error",
    }
)


def parse_routing_request(body: object) -> RoutingRequest:
    """Reduce a Messages request body to what routing reads."""
    return content.routing_request(body, _turns)


def _turns(body: content.JsonObject) -> list[Turn]:
    messages = content.non_empty_list(body.get("messages"), "messages")
    system = body.get("system")
    turns = [] if system is None else [Turn("system", content.text(system, "system", _TEXT_BLOCKS))]
    for path, message in content.objects(messages, "messages"):
        turns.extend(_message_turns(message, path))
    return turns


def _message_turns(message: content.JsonObject, path: str) -> list[Turn]:
    """One turn per message, except a user message carrying tool results.

    Tool results ride in user messages on this API, but they are tool output, not the user
    speaking: they become a "tool" turn, and the user turn keeps only the text the user wrote
    beside them (if any).
    """
    role = content.role(message, path, _ROLES)
    value = message.get("content")
    param = f"{path}.content"
    text = content.text(value, param, _TEXT_BLOCKS)
    if role == "user" and isinstance(value, list):
        results = [
            _tool_result_text(block, block_path)
            for block_path, kind, block in content.parts(value, param)
            if kind == "tool_result"
        ]
        if results:
            return [Turn("tool", "\n".join(results))] + ([Turn("user", text)] if text else [])
    return [Turn(role, text)]


def _tool_result_text(block: content.JsonObject, path: str) -> str:
    """A tool result's content: absent, a string, or a list of text (and image) blocks."""
    value = block.get("content")
    return "" if value is None else content.text(value, f"{path}.content", _TEXT_BLOCKS)


def error_body(error: RequestError) -> dict[str, Any]:
    """`{"type": "error", "error": {"type", "message"}}`, Anthropic's error shape."""
    if error.kind in _ANTHROPIC_ERRORS:
        kind = error.kind
    else:
        kind = "api_error" if error.status >= 500 else "invalid_request_error"
    return {"type": "error", "error": {"type": kind, "message": error.message}}
