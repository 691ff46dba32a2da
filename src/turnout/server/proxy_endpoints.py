"""`/v1/chat/completions` and `/v1/messages`: route, then call the chosen provider with failover.

When the provider speaks the client's API, the body is forwarded with only `model` replaced
and `routing_preferences` removed, and stream bytes are relayed as they arrive. Otherwise the
request, the response and each stream event go through the translation for that pair of APIs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from turnout.apis import ApiFormat
from turnout.apis.errors import RequestError
from turnout.apis.response_text import StreamTextEditor, body_usage, edit_sse
from turnout.apis.sse import aiter_events
from turnout.apis.translation import TRANSLATIONS, StreamTranslator, Translation
from turnout.governance.gate import Admitted, Gate, rate_limited
from turnout.governance.guards import OutputBlocked
from turnout.governance.keys import presented_key
from turnout.providers.failover import (
    DEFAULT_COOLDOWN,
    MAX_ATTEMPTS,
    Cooldowns,
    is_retryable,
    retry_after,
)
from turnout.providers.upstream import Target, TargetError, UpstreamPool, target_for
from turnout.routing.decision import Decision, RoutingService
from turnout.server.body import read_json
from turnout.server.trace_context import trace_headers

logger = logging.getLogger("turnout.proxy")

# Asking for an unencoded body lets turnout read or relay it without decoding it first.
_UPSTREAM_HEADERS = {"content-type": "application/json", "accept-encoding": "identity"}
_UPSTREAM_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError)
_HOP_HEADERS = {
    "content-length",
    "transfer-encoding",
    "connection",
    "content-encoding",
    "keep-alive",
}


@dataclass
class Attempts:
    """What happened to each candidate, for the response headers and the final error."""

    admitted: Admitted
    tried: list[str] = field(default_factory=list)
    last_error: RequestError | None = None


class Proxy:
    def __init__(
        self, service: RoutingService, pool: UpstreamPool, cooldowns: Cooldowns, gate: Gate
    ) -> None:
        self.service = service
        self.pool = pool
        self.cooldowns = cooldowns
        self.gate = gate

    async def handle(self, request: Request, api: ApiFormat) -> Response:
        config = self.service.config
        body = await read_json(request, config.max_body_bytes)
        routing_request = api.parse_routing_request(body)
        assert isinstance(body, dict)  # parse_routing_request refuses anything else
        admitted = await self.gate.admit(
            request.headers, api.name, body, routing_request.turns, trace_headers(request.headers)
        )
        decision = await self.service.decide(routing_request)
        own_model = config.resolve_model(routing_request.model) if routing_request.model else None
        if decision.route is None and routing_request.model and own_model is None:
            configured = ", ".join(config.model_ids())
            raise RequestError(
                f"model '{routing_request.model}' is not configured; configured models: {configured}",
                param="model",
            )
        candidates = self.gate.allowed(admitted, decision, own_model)
        forwarded = {k: v for k, v in admitted.body.items() if k != "routing_preferences"}
        client_key = presented_key(request.headers)
        attempts = Attempts(admitted=admitted)
        for model_id in self.cooldowns.order(candidates)[:MAX_ATTEMPTS]:
            try:
                target = target_for(config, model_id, client_key, api.name)
            except TargetError as exc:
                attempts.last_error = RequestError(str(exc), status=500, kind="api_error")
                continue
            rejection = await self.gate.admit_model(admitted, model_id)
            if rejection is not None:
                attempts.last_error = rate_limited(rejection, admitted.headers)
                continue
            attempts.tried.append(model_id)
            call = _Call(target, forwarded, api, TRANSLATIONS.get((api.name, target.api)))
            response = await self._attempt(call, decision, attempts)
            if response is not None:
                return response
        error = attempts.last_error or RequestError(
            "no model to call", status=500, kind="api_error"
        )
        return _error_response(api, error, decision, attempts)

    async def _attempt(
        self, call: _Call, decision: Decision, attempts: Attempts
    ) -> Response | None:
        """The response to give the client, or None to try the next candidate."""
        target = call.target
        session = self.pool.session_for(target.url)
        try:
            upstream = await session.post(
                target.url,
                data=json.dumps(call.upstream_body()).encode(),
                headers={**target.headers, **_UPSTREAM_HEADERS},
                timeout=target.timeout,
            )
        except _UPSTREAM_ERRORS as exc:
            logger.warning("%s: %s", target.model_id, type(exc).__name__)
            attempts.last_error = RequestError(
                f"{target.model_id} could not be reached ({type(exc).__name__})",
                status=502,
                kind="api_error",
            )
            return None
        if is_retryable(upstream.status):
            body = await _read(upstream)
            if upstream.status == 429:
                self.cooldowns.cool(
                    target.model_id, retry_after(upstream.headers) or DEFAULT_COOLDOWN
                )
            attempts.last_error = _upstream_error(target, upstream, body)
            return None
        headers = {**_turnout_headers(target, decision, attempts), **attempts.admitted.headers}
        if upstream.status >= 400:
            error = _upstream_error(target, upstream, await _read(upstream))
            return _error_response(call.api, error, decision, attempts)
        if call.client_body.get("stream"):
            return self._stream_response(call, upstream, headers, attempts.admitted)
        try:
            content = await upstream.read()
            parsed = json.loads(content)
        except _UPSTREAM_ERRORS + (ValueError,) as exc:
            attempts.last_error = RequestError(
                f"{target.model_id} answered with a body that is not JSON ({type(exc).__name__})",
                status=502,
                kind="api_error",
            )
            return None
        finally:
            upstream.release()
        if call.translation is None and not self.gate.reads_responses(attempts.admitted):
            return Response(
                content,
                status_code=upstream.status,
                headers={**_passed_headers(upstream), **headers},
            )
        client_body = (
            parsed if call.translation is None else call.translation.response(parsed, target.model)
        )
        try:
            client_body = await self.gate.guard_response(call.api.name, client_body)
        except OutputBlocked as exc:
            return _error_response(call.api, exc.as_error(), decision, attempts)
        finally:
            await self.gate.settle(
                attempts.admitted,
                target.model_id,
                body_usage(call.api.name, client_body),
                len(json.dumps(client_body)),
            )
        return JSONResponse(client_body, headers=headers)

    def _stream_response(
        self,
        call: _Call,
        upstream: aiohttp.ClientResponse,
        headers: dict[str, str],
        admitted: Admitted,
    ) -> Response:
        api = call.api
        frames: AsyncIterator[bytes]
        if call.translation is None:
            frames = _relay(upstream, api)
            headers = {**_passed_headers(upstream), **headers}
        else:
            translator = call.translation.stream(call.client_body, call.target.model)
            frames = _translate(upstream, api, translator)
            headers = {**headers, "content-type": "text/event-stream", "cache-control": "no-cache"}
        if self.gate.reads_responses(admitted):
            frames = self._governed(frames, api, call.target.model_id, admitted)
        return StreamingResponse(frames, status_code=upstream.status, headers=headers)

    async def _governed(
        self, frames: AsyncIterator[bytes], api: ApiFormat, model_id: str, admitted: Admitted
    ) -> AsyncIterator[bytes]:
        """Output guards applied to a client-format stream; its usage counted when it ends."""
        editor = StreamTextEditor(api.name, self.gate.guards.stream_editor())  # type: ignore[arg-type]
        try:
            async for frame in edit_sse(frames, editor, api.name):  # type: ignore[arg-type]
                yield frame
        except OutputBlocked as exc:
            yield _stream_error_event(api, exc.as_error().message)
        finally:
            await self.gate.settle(admitted, model_id, editor.usage, editor.text_chars)


@dataclass(frozen=True, slots=True)
class _Call:
    """One attempt: the target, the client's body and API, and the translation between them."""

    target: Target
    client_body: dict[str, Any]
    api: ApiFormat
    translation: Translation | None  # None: the provider speaks the client's API

    def upstream_body(self) -> dict[str, Any]:
        """Same API: the body as sent, with only `model` replaced; else the translated body."""
        if self.translation is None:
            return {**self.client_body, "model": self.target.model}
        return self.translation.request(self.client_body, self.target.model)


async def _relay(upstream: aiohttp.ClientResponse, api: ApiFormat) -> AsyncIterator[bytes]:
    """Upstream bytes as they arrive; a stream cut off upstream ends with an error event."""
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
    except _UPSTREAM_ERRORS as exc:
        logger.warning("upstream stream ended early: %s", type(exc).__name__)
        yield _stream_error_event(api, "the upstream stream ended before it was complete")
    finally:
        upstream.release()


async def _translate(
    upstream: aiohttp.ClientResponse, api: ApiFormat, translator: StreamTranslator
) -> AsyncIterator[bytes]:
    """Upstream events translated as each arrives; an incomplete stream ends with an error event."""
    try:
        async for name, data in aiter_events(upstream.content.iter_any()):
            for frame in translator.event(name, data):
                yield frame
        for frame in translator.finish():
            yield frame
        if not translator.complete:
            yield _stream_error_event(api, "the upstream stream ended before it was complete")
    except _UPSTREAM_ERRORS as exc:
        logger.warning("upstream stream failed: %s", type(exc).__name__)
        yield _stream_error_event(api, "the upstream stream ended before it was complete")
    finally:
        upstream.release()


async def _read(upstream: aiohttp.ClientResponse) -> bytes:
    """A failed upstream's body, for its message; unreadable is as good as empty."""
    try:
        return await upstream.read()
    except _UPSTREAM_ERRORS:
        return b""
    finally:
        upstream.release()


def _stream_error_event(api: ApiFormat, message: str) -> bytes:
    body = api.error_body(RequestError(message, status=502, kind="api_error"))
    if api.name == "anthropic_messages":
        return f"event: error\ndata: {json.dumps(body)}\n\n".encode()
    return f"data: {json.dumps(body)}\n\n".encode()


def _upstream_message(upstream: aiohttp.ClientResponse, body: bytes) -> str:
    try:
        error = json.loads(body).get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
    except (ValueError, AttributeError):
        pass
    return upstream.reason or "upstream error"


_KINDS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _upstream_error(target: Target, upstream: aiohttp.ClientResponse, body: bytes) -> RequestError:
    status = upstream.status
    kind = _KINDS.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return RequestError(
        f"{target.model_id}: {_upstream_message(upstream, body)}", status=status, kind=kind
    )


def _passed_headers(upstream: aiohttp.ClientResponse) -> dict[str, str]:
    return {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}


def _decision_headers(decision: Decision, attempts: Attempts) -> dict[str, str]:
    headers = {"x-turnout-attempts": str(len(attempts.tried)), "x-turnout-router": decision.router}
    if decision.route:
        headers["x-turnout-route"] = decision.route
    if decision.router_fallback:
        headers["x-turnout-router-fallback"] = decision.router_fallback
    return headers


def _turnout_headers(target: Target, decision: Decision, attempts: Attempts) -> dict[str, str]:
    return {"x-turnout-model": target.model_id, **_decision_headers(decision, attempts)}


def _error_response(
    api: ApiFormat, error: RequestError, decision: Decision, attempts: Attempts
) -> Response:
    headers = _decision_headers(decision, attempts)
    return Response(
        json.dumps(api.error_body(error)),
        status_code=error.status,
        media_type="application/json",
        headers=headers,
    )
