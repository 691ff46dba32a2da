"""Every piece of prompt text in a request body, for input guardrails to read or rewrite.

The body has already been read by the API's parser (parse_routing_request), so shapes are
known to be valid where routing looked; anything else found here is left untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Edit = Callable[[str], str]

_TEXT_PARTS = {
    "openai_chat": frozenset({"text"}),
    "anthropic_messages": frozenset({"text"}),
    "openai_responses": frozenset({"input_text", "output_text", "text"}),
}


def map_request_texts(api: str, body: dict[str, Any], edit: Edit) -> dict[str, Any]:
    """A copy of `body` with `edit` applied to each prompt text: system prompts, every message's
    text and text parts, Anthropic tool results' text, Responses `instructions` and `input`."""
    parts = _TEXT_PARTS[api]
    edited = dict(body)
    for field in ("system", "instructions"):
        if field in edited:
            edited[field] = _content(edited[field], parts, edit)
    if api == "openai_responses" and isinstance(edited.get("input"), str):
        edited["input"] = edit(edited["input"])
    conversation = "input" if api == "openai_responses" else "messages"
    if isinstance(edited.get(conversation), list):
        edited[conversation] = [_message(item, parts, edit) for item in edited[conversation]]
    return edited


def request_texts(api: str, body: dict[str, Any]) -> list[str]:
    """Every prompt text of a request, in order."""
    found: list[str] = []

    def collect(text: str) -> str:
        found.append(text)
        return text

    map_request_texts(api, body, collect)
    return found


def _message(item: object, parts: frozenset[str], edit: Edit) -> object:
    if not isinstance(item, dict) or "content" not in item:
        return item
    return {**item, "content": _content(item["content"], parts, edit)}


def _content(content: object, parts: frozenset[str], edit: Edit) -> object:
    if isinstance(content, str):
        return edit(content)
    if not isinstance(content, list):
        return content
    return [_part(part, parts, edit) for part in content]


def _part(part: object, parts: frozenset[str], edit: Edit) -> object:
    if not isinstance(part, dict):
        return part
    kind = part.get("type")
    if kind in parts and isinstance(part.get("text"), str):
        return {**part, "text": edit(part["text"])}
    if kind == "tool_result" and "content" in part:  # Anthropic: tool output rides in user turns
        return {**part, "content": _content(part["content"], parts, edit)}
    return part
