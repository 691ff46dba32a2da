"""Plano-style filter chains: HTTP services a request's messages (or a response's text) pass
through, in order, before turnout goes on.

A filter receives the messages as a JSON array of `{role, content}` and answers 200 with the
array to go on with (it may rewrite it), or a 4xx that refuses the request with its message.
A filter that is down, slow or answering 5xx or nonsense is handled by its `on_unavailable`:
`deny` (the default) refuses the request, `allow` goes on without it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

import aiohttp

from turnout.apis.errors import RequestError
from turnout.config.governance import Filter
from turnout.providers.upstream import UpstreamPool

logger = logging.getLogger("turnout.filters")

Messages = list[dict[str, Any]]
MAX_MESSAGE_CHARS = 500  # of a refusal's text, as given to the client

_KINDS = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}


class FilterUnavailable(Exception):
    """A filter gave no usable answer; never holds the filter's URL (it may carry credentials)."""


class FilterChain:
    def __init__(self, filters: Sequence[Filter], pool: UpstreamPool) -> None:
        self.filters = list(filters)
        self._pool = pool

    def __bool__(self) -> bool:
        return bool(self.filters)

    async def run(self, messages: Messages, trace_headers: dict[str, str]) -> Messages:
        """The messages after every filter; a refusal or a closed-failing filter is a RequestError."""
        for spec in self.filters:
            try:
                messages = await self._call(spec, messages, trace_headers)
            except FilterUnavailable as exc:
                logger.warning("filter %s unavailable (%s); %s", spec.id, exc, spec.on_unavailable)
                if spec.on_unavailable == "deny":
                    raise RequestError(
                        f"The filter '{spec.id}' is unavailable; the request was not processed.",
                        status=503,
                        kind="api_error",
                        rejection="filter",
                    ) from exc
        return messages

    async def _call(self, spec: Filter, messages: Messages, headers: dict[str, str]) -> Messages:
        session = self._pool.session_for(spec.url)
        try:
            async with asyncio.timeout(spec.timeout_seconds):
                async with session.post(
                    spec.url,
                    data=json.dumps(messages).encode(),
                    headers={**headers, "content-type": "application/json"},
                ) as response:
                    body = await response.read()
        except TimeoutError as exc:
            raise FilterUnavailable("timeout") from exc
        except aiohttp.ClientError as exc:
            raise FilterUnavailable(type(exc).__name__) from exc
        if 400 <= response.status < 500:
            raise _refusal(spec, response.status, body)
        if response.status != 200:
            raise FilterUnavailable(f"HTTP {response.status}")
        return _messages(body)


def _messages(body: bytes) -> Messages:
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise FilterUnavailable("a body that is not JSON") from exc
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise FilterUnavailable("a body that is not a list of messages")
    return value


def _refusal(spec: Filter, status: int, body: bytes) -> RequestError:
    """The filter's own message (its JSON `error.message` or `message`, else its text)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        candidate = error.get("message") if isinstance(error, dict) else parsed.get("message")
        if isinstance(candidate, str):
            text = candidate
    message = text[:MAX_MESSAGE_CHARS] or f"Refused by the filter '{spec.id}'."
    kind = _KINDS.get(status, "invalid_request_error")
    return RequestError(message, status=status, kind=kind, rejection="filter")


def last_text(messages: Messages) -> str | None:
    """The text of the last message an output filter returned, if it is text."""
    if not messages:
        return None
    content = messages[-1].get("content")
    return content if isinstance(content, str) else None
