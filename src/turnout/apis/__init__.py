"""The client-facing API formats turnout speaks, by name.

Each format knows how to read a request body into a RoutingRequest and how to render a
RequestError in the envelope that API's SDKs expect; the rest of turnout never sees wire JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from turnout.apis import anthropic_messages, openai_chat, openai_responses
from turnout.apis.errors import RequestError
from turnout.providers.registry import Api
from turnout.routing.conversation import RoutingRequest

__all__ = ["API_FORMATS", "ApiFormat", "RequestError"]


@dataclass(frozen=True, slots=True)
class ApiFormat:
    """One client-facing API: how to read its requests and how to render its errors."""

    name: Api
    parse_routing_request: Callable[[object], RoutingRequest]
    error_body: Callable[[RequestError], dict[str, Any]]


API_FORMATS: dict[str, ApiFormat] = {
    api.name: api
    for api in (
        ApiFormat("openai_chat", openai_chat.parse_routing_request, openai_chat.error_body),
        ApiFormat(
            "anthropic_messages",
            anthropic_messages.parse_routing_request,
            anthropic_messages.error_body,
        ),
        ApiFormat(
            "openai_responses", openai_responses.parse_routing_request, openai_responses.error_body
        ),
    )
}
