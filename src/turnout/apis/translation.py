"""Which translation serves a client API from a provider API, for requests, responses and streams."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from turnout.apis import chat_via_messages, messages_via_chat

Json = dict[str, Any]


class StreamTranslator(Protocol):
    """Upstream SSE events in, client SSE frames out, for one response."""

    @property
    def complete(self) -> bool: ...

    def event(self, name: str, data: str) -> list[bytes]: ...

    def finish(self) -> list[bytes]: ...


@dataclass(frozen=True, slots=True)
class Translation:
    request: Callable[[Json, str], Json]  # (client body, provider's model name) -> provider body
    response: Callable[[Json, str], Json]  # (provider body, model) -> client body
    stream: Callable[[Json, str], StreamTranslator]  # (client body, model) -> a fresh translator


def _chat_stream(body: Json, model: str) -> StreamTranslator:
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return chat_via_messages.StreamTranslator(model, include_usage)


def _messages_stream(body: Json, model: str) -> StreamTranslator:
    return messages_via_chat.StreamTranslator(model)


TRANSLATIONS: dict[tuple[str, str], Translation] = {
    ("openai_chat", "anthropic_messages"): Translation(
        chat_via_messages.request, chat_via_messages.response, _chat_stream
    ),
    ("anthropic_messages", "openai_chat"): Translation(
        messages_via_chat.request, messages_via_chat.response, _messages_stream
    ),
}
