"""`/v1/chat/completions` and `/v1/messages`: route, then call the chosen provider with failover.

When the provider speaks the client's API, the body is forwarded with only `model` replaced
and `routing_preferences` removed, and stream bytes are relayed as they arrive. Otherwise the
request, the response and each stream event go through the translation for that pair of APIs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from opentelemetry.trace import SpanKind
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from turnout.apis import ApiFormat
from turnout.apis.errors import RequestError
from turnout.apis.response_text import (
    StreamTextEditor,
    Usage,
    body_usage,
    edit_sse,
    map_body_texts,
)
from turnout.apis.sse import aiter_events
from turnout.apis.translation import TRANSLATIONS, StreamTranslator, Translation
from turnout.governance.gate import Admitted, Gate, rate_limited
from turnout.governance.guards import OutputBlocked
from turnout.governance.keys import presented_key
from turnout.observability.record import Attempt, Outcome
from turnout.observability.telemetry import Track
from turnout.observability.tracing import (
    Step,
    attempt_outcome_attributes,
    attempt_span_name,
    upstream_attributes,
)
from turnout.providers.failover import (
    DEFAULT_COOLDOWN,
    MAX_ATTEMPTS,
    Cooldowns,
    error_message,
    is_retryable,
    retry_after,
)
from turnout.providers.upstream import Target, TargetError, UpstreamPool, target_for
from turnout.routing.conversation import ROUTING_FIELDS, Turn
from turnout.routing.decision import Decision, RoutingService
from turnout.routing.feedback import Feedback
from turnout.server.body import read_json
from turnout.server.stages import decided, governed

logger = logging.getLogger("turnout.proxy")

# Asking for an unencoded body lets turnout read or relay it without decoding it first.
_UPSTREAM_HEADERS = {"content-type": "application/json", "accept-encoding": "identity"}
_UPSTREAM_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError)
# turnout's x-request-id is its trace id; the provider's own request id is kept under another name.
_RENAMED = {"x-request-id": "x-upstream-request-id"}
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
    track: Track
    tried: list[str] = field(default_factory=list)
    last_error: RequestError | None = None


class Proxy:
    def __init__(
        self,
        service: RoutingService,
        pool: UpstreamPool,
        cooldowns: Cooldowns,
        gate: Gate,
        feedback: Feedback,
    ) -> None:
        self.service = service
        self.feedback = feedback
        self.pool = pool
        self.cooldowns = cooldowns
        self.gate = gate

    async def handle(self, request: Request, api: ApiFormat, track: Track) -> Response:
        config = self.service.config
        record = track.record
        body = await read_json(request, config.max_body_bytes)
        routing_request = api.parse_routing_request(body)
        assert isinstance(body, dict)  # parse_routing_request refuses anything else
        record.requested_model = routing_request.model
        record.stream = bool(body.get("stream"))
        admitted = await governed(self.gate, track, request, api, body, routing_request)
        decision = await decided(self.service, self.feedback, track, routing_request)
        own_model = config.resolve_model(routing_request.model) if routing_request.model else None
        if decision.route is None and routing_request.model and own_model is None:
            configured = ", ".join(config.model_ids())
            raise RequestError(
                f"model '{routing_request.model}' is not configured; configured models: {configured}",
                param="model",
            )
        candidates = self.gate.allowed(admitted, decision, own_model)
        forwarded = {k: v for k, v in admitted.body.items() if k not in ROUTING_FIELDS}
        client_key = presented_key(request.headers)
        attempts = Attempts(admitted=admitted, track=track)
        for model_id in self.cooldowns.order(candidates)[:MAX_ATTEMPTS]:
            try:
                target = target_for(config, model_id, client_key, api.name)
            except TargetError as exc:
                attempts.last_error = RequestError(str(exc), status=500, kind="api_error")
                continue
            rejection = await self.gate.admit_model(admitted, model_id)
            if rejection is not None:
                attempts.last_error = rate_limited(rejection, admitted.headers)
                record.attempts.append(Attempt(model_id, 429, 0.0, "rate_limited"))
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
        track = attempts.track
        record = track.record
        started = time.perf_counter()
        step = track.begin(attempt_span_name(target.model), SpanKind.CLIENT)
        upstream = await self._send(call, attempts, step)
        status = upstream.status if upstream is not None else 0
        outcome = _outcome(status)
        if step is not None:
            track.end(
                step, upstream_attributes(target) | attempt_outcome_attributes(status, outcome)
            )
        record.attempts.append(
            Attempt(target.model_id, status, (time.perf_counter() - started) * 1000, outcome)
        )
        if upstream is None:
            return None
        if is_retryable(upstream.status):
            body = await _read(upstream)
            if upstream.status == 429:
                self.cooldowns.cool(
                    target.model_id, retry_after(upstream.headers) or DEFAULT_COOLDOWN
                )
            attempts.last_error = _upstream_error(target, upstream, body)
            return None
        record.model = target.model_id
        headers = {**_turnout_headers(target, decision, attempts), **attempts.admitted.headers}
        if upstream.status >= 400:
            error = _upstream_error(target, upstream, await _read(upstream))
            return _error_response(call.api, error, decision, attempts)
        if call.client_body.get("stream"):
            return self._stream_response(call, upstream, headers, attempts)
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
        admitted = attempts.admitted
        client_body = (
            parsed if call.translation is None else call.translation.response(parsed, target.model)
        )
        try:
            if self.gate.reads_responses(admitted):
                client_body = await self.gate.guard_response(admitted, call.api.name, client_body)
        except OutputBlocked as exc:
            return _error_response(call.api, exc.as_error(), decision, attempts)
        finally:
            usage = body_usage(call.api.name, client_body)
            await self._settle(attempts, target.model_id, usage, len(content))
        if attempts.track.records_content:
            attempts.track.content(_turns(call), _answer(call.api, client_body))
        if call.translation is None and not self.gate.reads_responses(admitted):
            return Response(
                content,
                status_code=upstream.status,
                headers={**_passed_headers(upstream), **headers},
            )
        return JSONResponse(client_body, headers=headers)

    async def _send(
        self, call: _Call, attempts: Attempts, step: Step | None
    ) -> aiohttp.ClientResponse | None:
        """The upstream's response (any status), or None when it could not be reached."""
        target = call.target
        session = self.pool.session_for(target.url)
        headers = attempts.track.inject({**target.headers, **_UPSTREAM_HEADERS}, step)
        try:
            return await session.post(
                target.url,
                data=json.dumps(call.upstream_body()).encode(),
                headers=headers,
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

    async def _settle(
        self, attempts: Attempts, model_id: str, usage: Usage | None, output_chars: int
    ) -> None:
        usage, cost = await self.gate.settle(attempts.admitted, model_id, usage, output_chars)
        record = attempts.track.record
        record.input_tokens, record.output_tokens = usage.input_tokens, usage.output_tokens
        record.cost_usd = cost

    def _stream_response(
        self,
        call: _Call,
        upstream: aiohttp.ClientResponse,
        headers: dict[str, str],
        attempts: Attempts,
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
        if self.gate.reads_responses(attempts.admitted):
            frames = self._governed(frames, api, call.target.model_id, attempts)
        return StreamingResponse(frames, status_code=upstream.status, headers=headers)

    async def _governed(
        self, frames: AsyncIterator[bytes], api: ApiFormat, model_id: str, attempts: Attempts
    ) -> AsyncIterator[bytes]:
        """Output guards applied to a client-format stream; its usage counted when it ends."""
        events = attempts.admitted.events
        editor = StreamTextEditor(api.name, self.gate.guards.stream_editor(events))
        try:
            async for frame in edit_sse(frames, editor, api.name):
                yield frame
        except OutputBlocked as exc:
            yield _stream_error_event(api, exc.as_error().message)
        finally:
            await self._settle(attempts, model_id, editor.usage, editor.text_chars)


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
        f"{target.model_id}: {error_message(body) or upstream.reason or 'upstream error'}",
        status=status,
        kind=kind,
    )


def _passed_headers(upstream: aiohttp.ClientResponse) -> dict[str, str]:
    return {
        _RENAMED.get(k.lower(), k): v
        for k, v in upstream.headers.items()
        if k.lower() not in _HOP_HEADERS
    }


def _decision_headers(decision: Decision, attempts: Attempts) -> dict[str, str]:
    headers = {"x-turnout-attempts": str(len(attempts.tried)), "x-turnout-router": decision.router}
    if decision.route:
        headers["x-turnout-route"] = decision.route
    if decision.router_fallback:
        headers["x-turnout-router-fallback"] = decision.router_fallback
    if decision.confidence is not None:
        headers["x-turnout-router-confidence"] = f"{decision.confidence:.4f}"
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


def _outcome(status: int) -> Outcome:
    if status == 0:
        return "unreachable"
    if is_retryable(status):
        return "retryable"
    return "failed" if status >= 400 else "answered"


def _turns(call: _Call) -> tuple[Turn, ...]:
    """The prompt as forwarded (after redaction and filters), for content recording."""
    return call.api.parse_routing_request(call.client_body).turns


def _answer(api: ApiFormat, body: dict[str, Any]) -> str:
    texts: list[str] = []
    map_body_texts(api.name, body, lambda text: texts.append(text) or text)  # type: ignore[func-returns-value]
    return "".join(texts)
