"""Validation and text extraction shared by the three API formats.

Every helper takes the `param` path of the value it inspects, so the RequestError it raises
names the exact spot the client got wrong (`messages[2].content[0].text`). The helpers check
types before touching a value, so malformed JSON of any shape ends as a RequestError, never as
a TypeError, KeyError or AttributeError.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from turnout.apis.errors import RequestError
from turnout.routing.conversation import Role, RoutingRequest, Turn

JsonObject = dict[str, Any]


def invalid(message: str, param: str | None) -> RequestError:
    """A 400 `invalid_request_error` about `param` (None when it concerns the whole body)."""
    return RequestError(message, status=400, kind="invalid_request_error", param=param)


def routing_request(body: object, turns_of: Callable[[JsonObject], list[Turn]]) -> RoutingRequest:
    """Read the fields every format shares; `turns_of` reads the format's own conversation.

    Unknown fields are ignored: clients send many, and routing needs none of them.
    """
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", None)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise invalid("`model` must be a string.", "model")
    preferences = body.get("routing_preferences")
    if preferences is not None and not isinstance(preferences, list):
        raise invalid("`routing_preferences` must be a list of routes.", "routing_preferences")
    no_route = body.get("no_route_examples")
    if no_route is not None and not (
        isinstance(no_route, list) and all(isinstance(text, str) for text in no_route)
    ):
        raise invalid("`no_route_examples` must be a list of strings.", "no_route_examples")
    return RoutingRequest(
        model=model,
        turns=tuple(turns_of(body)),
        routing_preferences=preferences,
        no_route_examples=no_route,
    )


def non_empty_list(value: object, param: str) -> list[Any]:
    """A required, non-empty list (`messages`, `input`)."""
    if value is None:
        raise invalid(f"`{param}` is required.", param)
    if not isinstance(value, list):
        raise invalid(f"`{param}` must be a list.", param)
    if not value:
        raise invalid(f"`{param}` must not be empty.", param)
    return value


def objects(items: list[Any], param: str) -> Iterator[tuple[str, JsonObject]]:
    """Each item of a list with its own param path, refusing any item that is not an object."""
    for index, item in enumerate(items):
        path = f"{param}[{index}]"
        if not isinstance(item, dict):
            raise invalid(f"`{path}` must be an object.", path)
        yield path, item


def role(message: JsonObject, param: str, roles: Mapping[str, Role]) -> Role:
    """The internal role of a message whose wire role must be one of `roles`' keys."""
    path = f"{param}.role"
    value = message.get("role")
    if value is None:
        raise invalid(f"`{path}` is required.", path)
    if not isinstance(value, str) or value not in roles:
        allowed = ", ".join(repr(name) for name in roles)
        raise invalid(f"`{path}` must be one of {allowed}.", path)
    return roles[value]


def parts(content: list[Any], param: str) -> Iterator[tuple[str, str, JsonObject]]:
    """Each content part as (path, type, part); a part must be an object with a string type."""
    for path, part in objects(content, param):
        kind = part.get("type")
        if not isinstance(kind, str):
            raise invalid(f"`{path}.type` must be a string.", f"{path}.type")
        yield path, kind, part


def part_text(part: JsonObject, param: str) -> str:
    """The `text` of a text part."""
    value = part.get("text")
    if not isinstance(value, str):
        raise invalid(f"`{param}.text` must be a string.", f"{param}.text")
    return value


def text(content: object, param: str, text_types: frozenset[str]) -> str:
    """The text of a string-or-parts content.

    Parts whose type is in `text_types` count; every other part (image, audio, file, and
    types added to the APIs later) is dropped, because routing reads text only.
    """
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(f"`{param}` must be a string or a list of content parts.", param)
    return "\n".join(
        part_text(part, path) for path, kind, part in parts(content, param) if kind in text_types
    )


def required_string(value: JsonObject, key: str, path: str) -> str:
    """A required string field, refused with the client's own param path when missing."""
    field = value.get(key)
    if not isinstance(field, str):
        raise invalid(f"`{path}.{key}` must be a string.", f"{path}.{key}")
    return field


def chat_function_tools(
    value: object, is_function: Callable[[object], bool], schema_key: str, dropped: list[str]
) -> list[JsonObject]:
    """A client's function tools as OpenAI chat tools, for the translations into chat.

    Tools of another kind (hosted or versioned server tools) and unknown keys are named in
    `dropped`. `strict` is passed only when the client set it: an unset `strict` means
    different things across APIs, and chat refuses a strict schema that does not fit already.
    """
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid("`tools` must be a list.", "tools")
    known = {"type", "name", "description", schema_key, "strict"}
    tools = []
    for path, tool in objects(value, "tools"):
        kind = tool.get("type")
        if not is_function(kind):
            dropped.append(f"tool type `{kind}`")
            continue
        dropped.extend(f"`{key}` on `tools`" for key in tool if key not in known)
        function: JsonObject = {"name": required_string(tool, "name", path)}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        function["parameters"] = tool.get(schema_key) or {"type": "object"}
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        tools.append({"type": "function", "function": function})
    return tools
