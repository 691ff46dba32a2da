"""`/v1/chat/completions` and `/v1/messages`: route, then call the chosen provider with failover.

This release proxies between the same API on both sides (OpenAI Chat to OpenAI-compatible
providers, Anthropic Messages to Anthropic): the body is forwarded with only `model` replaced
and `routing_preferences` removed, and stream bytes are relayed as they arrive. A candidate
that would need translation to another API is skipped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from turnout.apis import ApiFormat
from turnout.apis.errors import RequestError
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

logger = logging.getLogger("turnout.proxy")

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

    tried: list[str] = field(default_factory=list)
    last_error: RequestError | None = None


class Proxy:
    def __init__(self, service: RoutingService, pool: UpstreamPool, cooldowns: Cooldowns) -> None:
        self.service = service
        self.pool = pool
        self.cooldowns = cooldowns

    async def handle(self, request: Request, api: ApiFormat) -> Response:
        config = self.service.config
        body = await read_json(request, config.max_body_bytes)
        routing_request = api.parse_routing_request(body)
        assert isinstance(body, dict)  # parse_routing_request refuses anything else
        decision = await run_in_threadpool(self.service.decide, routing_request)
        own_model = config.resolve_model(routing_request.model) if routing_request.model else None
        if decision.route is None and routing_request.model and own_model is None:
            configured = ", ".join(config.model_ids())
            raise RequestError(
                f"model '{routing_request.model}' is not configured; configured models: {configured}",
                param="model",
            )
        forwarded = {k: v for k, v in body.items() if k != "routing_preferences"}
        client_key = _client_key(request)
        attempts = Attempts()
        for model_id in self.cooldowns.order(_candidates(decision, own_model))[:MAX_ATTEMPTS]:
            try:
                target = target_for(config, model_id, client_key)
            except TargetError as exc:
                attempts.last_error = RequestError(str(exc), status=500, kind="api_error")
                continue
            if target.api != api.name:
                attempts.last_error = RequestError(
                    f"{model_id} speaks {target.api}; translation to it from {api.name} is not available yet",
                    kind="invalid_request_error",
                )
                continue
            attempts.tried.append(model_id)
            response = await self._attempt(
                target, {**forwarded, "model": target.model}, api, decision, attempts
            )
            if response is not None:
                return response
        error = attempts.last_error or RequestError(
            "no model to call", status=500, kind="api_error"
        )
        return _error_response(api, error, decision, attempts)

    async def _attempt(
        self, target: Target, body: dict, api: ApiFormat, decision: Decision, attempts: Attempts
    ) -> Response | None:
        """The response to give the client, or None to try the next candidate."""
        client = self.pool.client_for(target.url)
        upstream_request = client.build_request(
            "POST",
            target.url,
            content=json.dumps(body).encode(),
            headers={**target.headers, "content-type": "application/json"},
            timeout=target.timeout,
        )
        try:
            upstream = await client.send(upstream_request, stream=True)
        except httpx.TransportError as exc:
            logger.warning("%s: %s", target.model_id, type(exc).__name__)
            attempts.last_error = RequestError(
                f"{target.model_id} could not be reached ({type(exc).__name__})",
                status=502,
                kind="api_error",
            )
            return None
        if is_retryable(upstream.status_code):
            await upstream.aread()
            await upstream.aclose()
            if upstream.status_code == 429:
                self.cooldowns.cool(
                    target.model_id, retry_after(upstream.headers) or DEFAULT_COOLDOWN
                )
            attempts.last_error = _upstream_error(target, upstream)
            return None
        headers = _turnout_headers(target, decision, attempts)
        if upstream.status_code >= 400:
            await upstream.aread()
            await upstream.aclose()
            return _error_response(api, _upstream_error(target, upstream), decision, attempts)
        if body.get("stream"):
            return StreamingResponse(
                _relay(upstream, api),
                status_code=upstream.status_code,
                headers={**_passed_headers(upstream), **headers},
            )
        content = await upstream.aread()
        await upstream.aclose()
        try:
            json.loads(content)
        except ValueError:
            attempts.last_error = RequestError(
                f"{target.model_id} answered with a body that is not JSON",
                status=502,
                kind="api_error",
            )
            return None
        return Response(
            content,
            status_code=upstream.status_code,
            headers={**_passed_headers(upstream), **headers},
        )


def _candidates(decision: Decision, own_model: str | None) -> list[str]:
    """The decision's models, then the request's own model as the last resort."""
    if own_model is None or own_model in decision.models:
        return decision.models
    return [*decision.models, own_model]


async def _relay(upstream: httpx.Response, api: ApiFormat) -> AsyncIterator[bytes]:
    """Upstream bytes as they arrive; a stream cut off upstream ends with an error event."""
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    except httpx.HTTPError as exc:
        logger.warning("upstream stream ended early: %s", type(exc).__name__)
        yield _stream_error_event(api, "the upstream stream ended before it was complete")
    finally:
        await upstream.aclose()


def _stream_error_event(api: ApiFormat, message: str) -> bytes:
    body = api.error_body(RequestError(message, status=502, kind="api_error"))
    if api.name == "anthropic_messages":
        return f"event: error\ndata: {json.dumps(body)}\n\n".encode()
    return f"data: {json.dumps(body)}\n\n".encode()


def _client_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip() or None
    return request.headers.get("x-api-key") or None


def _upstream_message(upstream: httpx.Response) -> str:
    try:
        error = json.loads(upstream.content).get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
    except (ValueError, AttributeError):
        pass
    return upstream.reason_phrase or "upstream error"


_KINDS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _upstream_error(target: Target, upstream: httpx.Response) -> RequestError:
    status = upstream.status_code
    kind = _KINDS.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return RequestError(
        f"{target.model_id}: {_upstream_message(upstream)}", status=status, kind=kind
    )


def _passed_headers(upstream: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}


def _turnout_headers(target: Target, decision: Decision, attempts: Attempts) -> dict[str, str]:
    headers = {"x-turnout-model": target.model_id, "x-turnout-attempts": str(len(attempts.tried))}
    if decision.route:
        headers["x-turnout-route"] = decision.route
    return headers


def _error_response(
    api: ApiFormat, error: RequestError, decision: Decision, attempts: Attempts
) -> Response:
    headers = {"x-turnout-attempts": str(len(attempts.tried))}
    if decision.route:
        headers["x-turnout-route"] = decision.route
    return Response(
        json.dumps(api.error_body(error)),
        status_code=error.status,
        media_type="application/json",
        headers=headers,
    )
