"""OpenAI Responses (`POST /v1/responses`): request reading; errors use OpenAI's envelope."""

from __future__ import annotations

from turnout.apis import content
from turnout.apis.openai_chat import error_body
from turnout.routing.conversation import Role, RoutingRequest, Turn

__all__ = ["error_body", "parse_routing_request"]

_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})


def parse_routing_request(body: object) -> RoutingRequest:
    """Reduce a Responses request body to what routing reads."""
    return content.routing_request(body, _turns)


def _turns(body: content.JsonObject) -> list[Turn]:
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise content.invalid("`instructions` must be a string.", "instructions")
    turns = [] if instructions is None else [Turn("system", instructions)]
    return turns + _input_turns(body.get("input"))


def _input_turns(value: object) -> list[Turn]:
    """`input` is either one user message as a string or a list of items."""
    if isinstance(value, str):
        if not value:
            raise content.invalid("`input` must not be empty.", "input")
        return [Turn("user", value)]
    if value is not None and not isinstance(value, list):
        raise content.invalid("`input` must be a string or a list of input items.", "input")
    items = content.non_empty_list(value, "input")
    turns = []
    for path, item in content.objects(items, "input"):
        turn = _item_turn(item, path)
        if turn is not None:
            turns.append(turn)
    return turns


def _item_turn(item: content.JsonObject, path: str) -> Turn | None:
    """The turn an input item contributes; tool calls, reasoning and other items add none."""
    kind = item.get("type", "message")  # an easy input message may omit its type
    if not isinstance(kind, str):
        raise content.invalid(f"`{path}.type` must be a string.", f"{path}.type")
    if kind == "message":
        role = content.role(item, path, _ROLES)
        return Turn(role, content.text(item.get("content"), f"{path}.content", _TEXT_PARTS))
    if kind == "function_call_output":
        return Turn("tool", content.text(item.get("output"), f"{path}.output", _TEXT_PARTS))
    return None
