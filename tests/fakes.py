"""Fake OpenAI and Anthropic servers for the proxy tests.

The real providers cannot be reached from the test machines, so these fakes stand in for them.
They are real HTTP servers (uvicorn on a loopback port) that speak the providers' wire formats
closely enough for the official SDKs to parse them (``tests/test_fakes.py`` proves that), and
they can be told to fail the ways real upstreams fail: an error in the provider's own envelope,
a dropped connection, a stream cut short, or a body that is not JSON.

Usage::

    with FakeProvider("openai") as fake:
        fake.queue(Reply("Hi!"), Fault(429, retry_after=1))
        ...  # point the gateway (or an SDK) at fake.url
        assert fake.requests[0].body["model"] == "gpt-4o-mini"
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import socket
import string
import struct
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Self

from conftest import ServerThread, free_port
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from turnout.apis import responses_via_chat
from turnout.apis.sse import events_of

Api = Literal["openai", "anthropic"]
StopReason = Literal["end_turn", "max_tokens", "stop_sequence"]

OPENAI_PATH = "/v1/chat/completions"
OPENAI_RESPONSES_PATH = "/v1/responses"  # the openai fake also speaks the Responses API
ANTHROPIC_PATH = "/v1/messages"
_ALNUM = string.ascii_letters + string.digits
# OpenAI reports finish reasons in its own vocabulary; Anthropic's is the finer one.
_OPENAI_FINISH: dict[StopReason, str] = {
    "end_turn": "stop",
    "max_tokens": "length",
    "stop_sequence": "stop",
}
_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
GARBAGE = "<html><body>this is not JSON {"


@dataclass(frozen=True)
class ToolCall:
    """A function call the fake model makes instead of answering in text."""

    name: str
    arguments: dict[str, Any]


@dataclass
class Reply:
    """What the fake answers next (a successful response)."""

    text: str = "Hello from the fake."
    tool_call: ToolCall | None = None
    chunks: int = 3
    delay: float = 0.0
    gate: threading.Event | None = None
    # Extension: why generation stopped, in Anthropic's words; mapped to OpenAI's finish_reason
    # ("max_tokens" -> "length"). A tool call always stops with tool_use / tool_calls.
    stop_reason: StopReason = "end_turn"


@dataclass
class Fault:
    """How the fake fails next: an HTTP error in the provider's envelope, or a broken transport."""

    status: int = 500
    message: str = "upstream failure"
    retry_after: float | None = None
    kind: Literal["status", "reset", "truncate", "garbage"] = "status"


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it, so tests can check what the gateway forwarded."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def _rand(n: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def _tokens(text: str) -> int:
    """A deterministic token count (about four characters a token), never zero."""
    return max(1, math.ceil(len(text) / 4))


def _split(text: str, pieces: int) -> list[str]:
    """Cut ``text`` into at most ``pieces`` consecutive non-empty parts."""
    if not text:
        return []
    size = math.ceil(len(text) / max(1, pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _text_of(content: Any) -> str:
    """The plain text of a message's content: a string, or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text")
        )
    return ""


def _prompt_text(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    texts = [_text_of(body.get("system"))]
    texts += [_text_of(m.get("content")) for m in messages if isinstance(m, dict)]
    return "\n".join(text for text in texts if text)


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _retry_headers(fault: Fault) -> dict[str, str]:
    return {} if fault.retry_after is None else {"retry-after": f"{fault.retry_after:g}"}


class _Plan:
    """One successful answer rendered as a whole body and as stream events.

    ``cut`` is how many stream events go out up to and including the first content chunk:
    the point where a gate holds the stream and where a truncated stream breaks off.
    """

    def __init__(self, body: object, events: list[str], cut: int) -> None:
        self.body = body
        self.events = events
        self.cut = cut


class FakeProvider:
    """A fake OpenAI or Anthropic API on 127.0.0.1, served by uvicorn in a daemon thread."""

    def __init__(self, api: Api, api_key: str | None = "test-key") -> None:
        """`api_key` None: no key is asked for, as a self-hosted vLLM server without --api-key."""
        if api not in ("openai", "anthropic"):
            raise ValueError(f"unknown api {api!r}")
        self.api: Api = api
        self.api_key = api_key
        self.requests: list[Recorded] = []
        self.open_streams = 0  # streams being sent now; a gateway that drops its reader closes them
        self._outcomes: deque[Reply | Fault] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ServerThread(self, free_port())
        self.url: str = self._server.url

    def __enter__(self) -> Self:
        self._server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        # Release any stream still parked on a gate or delay, or uvicorn waits for it on shutdown.
        self._closing.set()
        self._server.__exit__(*exc)

    def queue(self, *outcomes: Reply | Fault) -> None:
        """Script the next responses, consumed one per valid request, in order."""
        with self._lock:
            self._outcomes.extend(outcomes)

    def clear(self) -> None:
        """Forget recorded requests and unused outcomes, so one server can serve many tests."""
        with self._lock:
            self._outcomes.clear()
        self.requests.clear()

    def _next(self, body: dict[str, Any]) -> Reply | Fault:
        with self._lock:
            if self._outcomes:
                return self._outcomes.popleft()
        return Reply(text=f"You said: {_last_user_text(body)}")

    # ---- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A raw ASGI app, not Starlette's router, so ``send`` is uvicorn's own (see _drop)."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        response = await self._handle(Request(scope, receive), send)
        if response is not None:
            await response(scope, receive, send)

    async def _handle(self, request: Request, send: Send) -> Response | None:
        raw = await request.body()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(Recorded(request.url.path, headers, body))

        paths = (OPENAI_PATH, OPENAI_RESPONSES_PATH) if self.api == "openai" else (ANTHROPIC_PATH,)
        responses_api = request.url.path == OPENAI_RESPONSES_PATH
        if request.method != "POST" or request.url.path not in paths:
            return self._error(404, f"Unknown request URL: {request.method} {request.url.path}")
        if (refusal := self._check_auth(headers)) is not None:
            return refusal
        if not isinstance(parsed, dict):
            return self._error(400, "The request body is not valid JSON.")
        # The Messages API also insists on max_tokens; a translating gateway must supply it.
        conversation = "input" if responses_api else "messages"
        required = ("model", conversation) + (("max_tokens",) if self.api == "anthropic" else ())
        for name in required:
            if name not in body:
                if self.api == "anthropic":
                    return self._error(400, f"{name}: Field required")
                return self._error(400, f"Missing required parameter: '{name}'.", param=name)

        outcome = self._next(body)
        stream = bool(body.get("stream"))
        if isinstance(outcome, Fault):
            return await self._fault(outcome, body, stream, send)
        await self._wait(outcome.delay)
        plan = _responses_plan(outcome, body) if responses_api else self._plan(outcome, body)
        if not stream:
            return JSONResponse(plan.body, headers=self._ids())
        return self._stream(plan, outcome.gate)

    def _check_auth(self, headers: dict[str, str]) -> Response | None:
        if self.api_key is None:
            return None
        if self.api == "openai":
            given = headers.get("authorization", "")
            if not given.startswith("Bearer "):
                return self._error(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    code=None,
                )
            if (key := given.removeprefix("Bearer ")) != self.api_key:
                return self._error(
                    401,
                    f"Incorrect API key provided: {key[:3]}***{key[-4:]}. "
                    "You can find your API key at https://platform.openai.com/account/api-keys.",
                )
            return None
        # The documented header is x-api-key; the anthropic 2.x SDK sends its api_key as a
        # Bearer token instead, so either one carrying the right key is accepted.
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        if self.api_key not in (headers.get("x-api-key"), bearer):
            return self._error(401, "invalid x-api-key")
        if "anthropic-version" not in headers:
            return self._error(400, "anthropic-version: header is required")
        return None

    # ---- failures ---------------------------------------------------------------------------

    def _ids(self) -> dict[str, str]:
        """The per-response id header each provider sets on every response."""
        if self.api == "openai":
            return {"x-request-id": f"req_{secrets.token_hex(16)}"}
        return {"request-id": f"req_01{_rand(22)}"}

    def _error(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None | Literal[False] = False,
        extra: dict[str, str] | None = None,
    ) -> Response:
        """An error in the provider's own envelope (``code=False`` means the status's default)."""
        headers = self._ids() | (extra or {})
        if self.api == "openai":
            kind, default_code = _OPENAI_ERROR_TYPES.get(
                status, ("server_error" if status >= 500 else "invalid_request_error", None)
            )
            error = {
                "message": message,
                "type": kind,
                "param": param,
                "code": default_code if code is False else code,
            }
            return JSONResponse({"error": error}, status_code=status, headers=headers)
        kind = _ANTHROPIC_ERROR_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        envelope = {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": headers["request-id"],
        }
        return JSONResponse(envelope, status_code=status, headers=headers)

    async def _fault(
        self, fault: Fault, body: dict[str, Any], stream: bool, send: Send
    ) -> Response | None:
        if fault.kind == "status":
            return self._error(fault.status, fault.message, extra=_retry_headers(fault))
        if fault.kind == "reset":
            await _drop(send, reset=True)
            return None
        if fault.kind == "garbage":
            if stream:
                event = "event: message_start\n" if self.api == "anthropic" else ""
                return Response(
                    f"{event}data: {GARBAGE}\n\n",
                    media_type="text/event-stream",
                    headers=self._ids(),
                )
            return Response(GARBAGE, media_type="application/json", headers=self._ids())
        # truncate: a 200 whose body breaks off part-way, then the connection closes. A stream
        # stops after its first content chunk; a whole body stops half-way through the bytes
        # its content-length promised.
        plan = self._plan(Reply(text=f"You said: {_last_user_text(body)}"), body)
        headers = self._ids()
        if stream:
            parts = plan.events[: plan.cut]
            media = "text/event-stream"
        else:
            whole = json.dumps(plan.body)
            parts = [whole[: len(whole) // 2]]
            media = "application/json"
            headers["content-length"] = str(len(whole.encode()))

        async def broken() -> AsyncIterator[str]:
            for part in parts:
                yield part
            await _drop(send, reset=False)

        return StreamingResponse(broken(), media_type=media, headers=headers)

    # ---- success ----------------------------------------------------------------------------

    async def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._closing.is_set():
            await asyncio.sleep(min(0.01, max(0.0, deadline - time.monotonic())))

    def _stream(self, plan: _Plan, gate: threading.Event | None) -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            self.open_streams += 1
            try:
                for event in plan.events[: plan.cut]:
                    yield event
                while gate is not None and not gate.is_set() and not self._closing.is_set():
                    await asyncio.sleep(0.005)
                for event in plan.events[plan.cut :]:
                    yield event
            finally:
                self.open_streams -= 1  # also when the reader went away mid-stream

        headers = self._ids() | {"cache-control": "no-cache"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    def _plan(self, reply: Reply, body: dict[str, Any]) -> _Plan:
        if self.api == "openai":
            return _openai_plan(reply, body)
        return _anthropic_plan(reply, body)


def _responses_plan(reply: Reply, body: dict[str, Any]) -> _Plan:
    """The Responses API's shapes, rendered from the chat plan by turnout's own translation.

    That translation's output is checked against the official SDK's Responses types in
    tests/test_responses_via_chat.py, and test_fakes.py drives this endpoint with the SDK.
    """
    model = str(body["model"])
    chat = {**responses_via_chat.request(body, model), "stream_options": {"include_usage": True}}
    chat_plan = _openai_plan(reply, chat)
    translator = responses_via_chat.StreamTranslator(model)
    frames = [
        frame
        for name, data in events_of(event.encode() for event in chat_plan.events)
        for frame in translator.event(name, data)
    ]
    events = [frame.decode() for frame in frames]
    cut = next(
        (i + 1 for i, e in enumerate(events) if ".delta" in e.split("\n", 1)[0]), len(events)
    )
    return _Plan(responses_via_chat.response(chat_plan.body, model), events, cut)


async def _drop(send: Send, *, reset: bool) -> None:
    """Close the client's TCP connection under uvicorn's feet.

    Raising from the app is not enough: before the response has started uvicorn answers a 500
    for us. So reach the transport through ``send``, which is a bound method of uvicorn's
    request cycle, and close it: with RST (SO_LINGER 0) for a reset, and with a plain FIN after
    flushing what was written for a truncation (an RST could make the client drop that data).
    Then wait for uvicorn to notice, so it neither answers a 500 nor logs an error.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("cannot reach the connection: the fake needs uvicorn's own send")
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()
    for _ in range(200):
        if getattr(cycle, "disconnected", True):
            return
        await asyncio.sleep(0.005)


# ---- OpenAI Chat Completions ------------------------------------------------------------------


def _openai_plan(reply: Reply, body: dict[str, Any]) -> _Plan:
    """A ``chat.completion`` object and the matching ``chat.completion.chunk`` stream."""
    completion_id = f"chatcmpl-{_rand(29)}"
    created = int(time.time())
    model = body.get("model")
    prompt_tokens = _tokens(_prompt_text(body))
    common = {
        "created": created,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_fa4e5c0d1b",
    }

    if reply.tool_call is not None:
        call_id = f"call_{_rand(24)}"
        arguments = json.dumps(reply.tool_call.arguments)
        completion_tokens = _tokens(reply.tool_call.name + arguments)
        finish = "tool_calls"
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": reply.tool_call.name, "arguments": arguments},
                }
            ],
            "refusal": None,
            "annotations": [],
        }
        opening: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": reply.tool_call.name, "arguments": ""},
                }
            ],
            "refusal": None,
        }
        deltas: list[dict[str, Any]] = [
            {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
            for piece in _split(arguments, reply.chunks)
        ]
    else:
        completion_tokens = _tokens(reply.text)
        finish = _OPENAI_FINISH[reply.stop_reason]
        message = {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []}
        opening = {"role": "assistant", "content": "", "refusal": None}
        deltas = [{"content": piece} for piece in _split(reply.text, reply.chunks)]

    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    whole = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": common["system_fingerprint"],
    }

    # With include_usage every chunk carries "usage": null and one extra chunk, with empty
    # choices, carries the totals; without it the key is absent.
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(choices: list[dict[str, Any]], chunk_usage: Any = None) -> str:
        data: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            **common,
            "choices": choices,
        }
        if include_usage:
            data["usage"] = chunk_usage
        return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"

    def choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    events = [chunk([choice(opening)])]
    events += [chunk([choice(delta)]) for delta in deltas]
    events.append(chunk([choice({}, finish)]))
    if include_usage:
        events.append(chunk([], usage))
    events.append("data: [DONE]\n\n")
    cut = 2 if deltas else 1
    return _Plan(whole, events, cut)


# ---- Anthropic Messages -----------------------------------------------------------------------


def _anthropic_plan(reply: Reply, body: dict[str, Any]) -> _Plan:
    """A ``message`` object and the matching ``message_start`` ... ``message_stop`` stream."""
    message_id = f"msg_01{_rand(22)}"
    input_tokens = _tokens(_prompt_text(body))

    stop_sequence: str | None = None
    if reply.tool_call is not None:
        tool_id = f"toolu_01{_rand(22)}"
        arguments = json.dumps(reply.tool_call.arguments)
        output_tokens = _tokens(reply.tool_call.name + arguments)
        stop_reason = "tool_use"
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": tool_id,
            "name": reply.tool_call.name,
            "input": reply.tool_call.arguments,
        }
        opening: dict[str, Any] = {**block, "input": {}}
        # The API opens a tool's input with an empty partial_json before the real pieces.
        lead = [{"type": "input_json_delta", "partial_json": ""}]
        deltas = [
            {"type": "input_json_delta", "partial_json": piece}
            for piece in _split(arguments, reply.chunks)
        ]
    else:
        output_tokens = _tokens(reply.text)
        stop_reason = reply.stop_reason
        if stop_reason == "stop_sequence":
            stop_sequence = (body.get("stop_sequences") or ["\n\nHuman:"])[0]
        block = {"type": "text", "text": reply.text}
        opening = {"type": "text", "text": ""}
        lead = []
        deltas = [
            {"type": "text_delta", "text": piece} for piece in _split(reply.text, reply.chunks)
        ]

    usage = {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }
    whole = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": [block],
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage,
    }

    def event(name: str, data: dict[str, Any]) -> str:
        return (
            f"event: {name}\ndata: {json.dumps({'type': name, **data}, separators=(',', ':'))}\n\n"
        )

    start_message = {
        **whole,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    events = [
        event("message_start", {"message": start_message}),
        event("content_block_start", {"index": 0, "content_block": opening}),
        event("ping", {}),
    ]
    events += [event("content_block_delta", {"index": 0, "delta": delta}) for delta in lead]
    cut = len(events) + (1 if deltas else 0)
    events += [event("content_block_delta", {"index": 0, "delta": delta}) for delta in deltas]
    events += [
        event("content_block_stop", {"index": 0}),
        event(
            "message_delta",
            {
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": {
                    "input_tokens": input_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": output_tokens,
                },
            },
        ),
        event("message_stop", {}),
    ]
    return _Plan(whole, events, cut)
