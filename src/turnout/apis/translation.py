"""Which translation serves a client API from a provider API, for requests, responses and streams."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from turnout.apis import chat_via_messages, messages_via_chat, responses_via_chat
from turnout.apis.sse import events_of

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


def _responses_stream(body: Json, model: str) -> StreamTranslator:
    return responses_via_chat.StreamTranslator(model)


class _ChainedStream:
    """Provider events through `inner` (to the middle API), then through `outer` (to the client's)."""

    def __init__(self, outer: StreamTranslator, inner: StreamTranslator) -> None:
        self._outer = outer
        self._inner = inner

    @property
    def complete(self) -> bool:
        return self._outer.complete

    def event(self, name: str, data: str) -> list[bytes]:
        return self._relay(self._inner.event(name, data))

    def finish(self) -> list[bytes]:
        return self._relay(self._inner.finish()) + self._outer.finish()

    def _relay(self, frames: list[bytes]) -> list[bytes]:
        return [out for name, data in events_of(frames) for out in self._outer.event(name, data)]


def chain(outer: Translation, inner: Translation) -> Translation:
    """client --outer--> a middle API --inner--> provider, when no direct translation exists."""

    def stream(body: Json, model: str) -> StreamTranslator:
        return _ChainedStream(
            outer.stream(body, model), inner.stream(outer.request(body, model), model)
        )

    return Translation(
        request=lambda body, model: inner.request(outer.request(body, model), model),
        response=lambda body, model: outer.response(inner.response(body, model), model),
        stream=stream,
    )


CHAT_VIA_MESSAGES = Translation(chat_via_messages.request, chat_via_messages.response, _chat_stream)
MESSAGES_VIA_CHAT = Translation(
    messages_via_chat.request, messages_via_chat.response, _messages_stream
)
RESPONSES_VIA_CHAT = Translation(
    responses_via_chat.request, responses_via_chat.response, _responses_stream
)

TRANSLATIONS: dict[tuple[str, str], Translation] = {
    ("openai_chat", "anthropic_messages"): CHAT_VIA_MESSAGES,
    ("anthropic_messages", "openai_chat"): MESSAGES_VIA_CHAT,
    ("openai_responses", "openai_chat"): RESPONSES_VIA_CHAT,
    ("openai_responses", "anthropic_messages"): chain(RESPONSES_VIA_CHAT, CHAT_VIA_MESSAGES),
}
