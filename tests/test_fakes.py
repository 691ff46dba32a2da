"""The fake providers speak the real wire formats: the official SDKs, pointed at them, agree.

The proxy tests trust ``tests/fakes.py`` to behave like OpenAI and Anthropic. These checks drive
the fakes with the ``openai`` and ``anthropic`` SDKs themselves (their parsers, error mapping
and stream accumulators), and with plain httpx where the point is the transport: flushing,
gates, dropped connections, and delays.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from anthropic.types import MessageParam
from fakes import FakeProvider, Fault, Recorded, Reply, ToolCall
from openai.types.chat import ChatCompletionMessageParam

KEY = "test-key"
PROMPT = "Say hi"  # 6 characters: 2 prompt tokens
OPENAI_USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]
CLAUDE_USER: list[MessageParam] = [{"role": "user", "content": PROMPT}]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, FakeProvider]]:
    """One server per API for the whole module: starting and stopping uvicorn is the slow part."""
    with FakeProvider("openai", api_key=KEY) as oa, FakeProvider("anthropic", api_key=KEY) as an:
        yield {"openai": oa, "anthropic": an}


def fresh(server: FakeProvider) -> Iterator[FakeProvider]:
    server.clear()
    yield server
    server.clear()


@pytest.fixture
def openai_fake(servers: dict[str, FakeProvider]) -> Iterator[FakeProvider]:
    yield from fresh(servers["openai"])


@pytest.fixture
def anthropic_fake(servers: dict[str, FakeProvider]) -> Iterator[FakeProvider]:
    yield from fresh(servers["anthropic"])


@pytest.fixture
def oai(openai_fake: FakeProvider) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{openai_fake.url}/v1", api_key=KEY, max_retries=0) as client:
        yield client


@pytest.fixture
def claude(anthropic_fake: FakeProvider) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=anthropic_fake.url, api_key=KEY, max_retries=0) as client:
        yield client


def endpoint(fake: FakeProvider) -> str:
    return fake.url + ("/v1/chat/completions" if fake.api == "openai" else "/v1/messages")


def auth(fake: FakeProvider) -> dict[str, str]:
    if fake.api == "openai":
        return {"authorization": f"Bearer {KEY}"}
    return {"x-api-key": KEY, "anthropic-version": "2023-06-01"}


def request_body(fake: FakeProvider, *, stream: bool = False) -> dict[str, Any]:
    messages = [{"role": "user", "content": PROMPT}]
    body: dict[str, Any] = {"model": "m-1", "messages": messages, "stream": stream}
    if fake.api == "anthropic":
        body["max_tokens"] = 64
    return body


def content_piece(payload: dict[str, Any]) -> str | None:
    """The text a stream event adds, in either provider's format; None if it adds none."""
    if payload.get("type") == "content_block_delta":
        text = payload["delta"].get("text")
        return str(text) if text else None
    choices = payload.get("choices") or [{}]
    content = choices[0].get("delta", {}).get("content")
    return content or None


def data_of(line: str) -> dict[str, Any] | None:
    if not line.startswith("data: ") or line == "data: [DONE]":
        return None
    payload: dict[str, Any] = json.loads(line.removeprefix("data: "))
    return payload


def pieces_of(lines: list[str]) -> list[str]:
    """The content pieces carried by the data lines of a stream, in order."""
    payloads = [payload for payload in map(data_of, lines) if payload is not None]
    return [piece for piece in map(content_piece, payloads) if piece]


# ---- OpenAI SDK against the openai fake -------------------------------------------------------


def test_openai_text_completion(openai_fake: FakeProvider, oai: openai.OpenAI) -> None:
    openai_fake.queue(Reply("Hi there, friend."))  # 17 characters: 5 completion tokens
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=OPENAI_USER)
    completion = raw.parse()
    assert raw.headers["x-request-id"].startswith("req_")
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o-mini"
    assert abs(completion.created - time.time()) < 60
    choice = completion.choices[0]
    assert (choice.message.role, choice.message.content) == ("assistant", "Hi there, friend.")
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (2, 5, 7)


def test_openai_stream_reassembles_and_ends_with_usage_chunk(
    openai_fake: FakeProvider, oai: openai.OpenAI
) -> None:
    text = "Streaming works piece by piece."
    openai_fake.queue(Reply(text, chunks=4))
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=OPENAI_USER,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk.id for chunk in chunks}) == 1
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) == 4
    assert "".join(pieces) == text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    final = chunks[-1]
    assert final.choices == []
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (2, 8)
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_openai_stream_without_include_usage_has_no_usage(openai_fake: FakeProvider) -> None:
    with httpx.stream(
        "POST",
        endpoint(openai_fake),
        headers=auth(openai_fake),
        json=request_body(openai_fake, stream=True),
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"
    payloads = [p for p in map(data_of, lines) if p is not None]
    assert all("usage" not in p and p["choices"] for p in payloads)


def test_openai_tool_call(openai_fake: FakeProvider, oai: openai.OpenAI) -> None:
    args = {"city": "Paris", "unit": "celsius"}
    openai_fake.queue(Reply(tool_call=ToolCall("get_weather", args)))
    completion = oai.chat.completions.create(model="gpt-4o", messages=OPENAI_USER)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == args


def test_openai_tool_call_stream_deltas(openai_fake: FakeProvider, oai: openai.OpenAI) -> None:
    args = {"query": "fake providers", "limit": 5}
    openai_fake.queue(Reply(tool_call=ToolCall("search", args), chunks=3))
    stream = oai.chat.completions.create(model="gpt-4o", messages=OPENAI_USER, stream=True)
    calls = [tc for chunk in stream for tc in (chunk.choices[0].delta.tool_calls or [])]
    first, *rest = calls
    assert first.index == 0
    assert first.id is not None and first.id.startswith("call_")
    assert first.function is not None and first.function.name == "search"
    assert len(rest) == 3
    assert all(tc.index == 0 and tc.id is None for tc in rest)
    arguments = "".join((tc.function.arguments or "") for tc in calls if tc.function)
    assert json.loads(arguments) == args


def test_openai_rate_limit(openai_fake: FakeProvider, oai: openai.OpenAI) -> None:
    openai_fake.queue(Fault(429, "Rate limit reached", retry_after=2))
    with pytest.raises(openai.RateLimitError) as caught:
        oai.chat.completions.create(model="gpt-4o-mini", messages=OPENAI_USER)
    error = caught.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "2"
    assert error.code == "rate_limit_exceeded"
    assert isinstance(error.body, dict) and error.body["message"] == "Rate limit reached"
    assert set(error.body) == {"message", "type", "param", "code"}


def test_openai_server_error(openai_fake: FakeProvider, oai: openai.OpenAI) -> None:
    openai_fake.queue(Fault(500, "boom"))
    with pytest.raises(openai.InternalServerError) as caught:
        oai.chat.completions.create(model="gpt-4o-mini", messages=OPENAI_USER)
    assert caught.value.type == "server_error"
    assert "retry-after" not in caught.value.response.headers


def test_openai_wrong_key(openai_fake: FakeProvider) -> None:
    with (
        openai.OpenAI(base_url=f"{openai_fake.url}/v1", api_key="sk-wrong", max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        bad.chat.completions.create(model="gpt-4o-mini", messages=OPENAI_USER)
    assert caught.value.code == "invalid_api_key"
    assert caught.value.type == "invalid_request_error"


def test_openai_records_what_the_sdk_sent(openai_fake: FakeProvider, oai: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hello?"}]},
    ]
    completion = oai.chat.completions.create(
        model="gpt-4o-mini", messages=messages, temperature=0.25, max_tokens=20
    )
    assert completion.choices[0].message.content == "You said: Hello?"
    (recorded,) = openai_fake.requests
    assert isinstance(recorded, Recorded)
    assert recorded.path == "/v1/chat/completions"
    assert recorded.body == {
        "model": "gpt-4o-mini",
        "messages": messages,
        "temperature": 0.25,
        "max_tokens": 20,
    }
    assert recorded.headers["authorization"] == f"Bearer {KEY}"
    assert recorded.headers["content-type"] == "application/json"


def test_openai_bad_request_without_model(openai_fake: FakeProvider) -> None:
    response = httpx.post(
        endpoint(openai_fake),
        headers=auth(openai_fake),
        json={"messages": [{"role": "user", "content": PROMPT}]},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "model")


# ---- Anthropic SDK against the anthropic fake -------------------------------------------------


def test_anthropic_text_message(anthropic_fake: FakeProvider, claude: anthropic.Anthropic) -> None:
    anthropic_fake.queue(Reply("Hi there, friend."))
    message = claude.messages.create(model="claude-x-1", max_tokens=64, messages=CLAUDE_USER)
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == "claude-x-1"
    assert message._request_id is not None and message._request_id.startswith("req_")
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].type == "text" and message.content[0].text == "Hi there, friend."
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (2, 5, 0)


def test_anthropic_stream_text_and_final_usage(
    anthropic_fake: FakeProvider, claude: anthropic.Anthropic
) -> None:
    text = "Streaming works piece by piece."
    anthropic_fake.queue(Reply(text, chunks=4))
    with claude.messages.stream(model="claude-x-1", max_tokens=64, messages=CLAUDE_USER) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) == 4
    assert "".join(pieces) == text
    assert final.content[0].type == "text" and final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 8)


def test_anthropic_stream_event_order(anthropic_fake: FakeProvider) -> None:
    anthropic_fake.queue(Reply("abcdef", chunks=2))
    with httpx.stream(
        "POST",
        endpoint(anthropic_fake),
        headers=auth(anthropic_fake),
        json=request_body(anthropic_fake, stream=True),
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.headers["request-id"].startswith("req_")
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    payloads = [p for p in map(data_of, lines) if p is not None]
    assert [p["type"] for p in payloads] == names  # each data line repeats its event name
    assert payloads[0]["message"]["usage"]["input_tokens"] == 2
    assert payloads[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert payloads[-2]["usage"]["output_tokens"] == 2


def test_anthropic_tool_use(anthropic_fake: FakeProvider, claude: anthropic.Anthropic) -> None:
    args = {"city": "Paris", "days": 3}
    anthropic_fake.queue(Reply(tool_call=ToolCall("get_weather", args)))
    message = claude.messages.create(model="claude-x-1", max_tokens=64, messages=CLAUDE_USER)
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert block.type == "tool_use"
    assert block.id.startswith("toolu_")
    assert (block.name, block.input) == ("get_weather", args)


def test_anthropic_tool_use_stream(
    anthropic_fake: FakeProvider, claude: anthropic.Anthropic
) -> None:
    args = {"query": "fake providers", "limit": 5}
    anthropic_fake.queue(Reply(tool_call=ToolCall("search", args), chunks=3))
    with claude.messages.stream(model="claude-x-1", max_tokens=64, messages=CLAUDE_USER) as stream:
        partials = [
            event.delta.partial_json
            for event in stream
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta"
        ]
        final = stream.get_final_message()
    assert len([p for p in partials if p]) == 3
    assert json.loads("".join(partials)) == args
    (block,) = final.content
    assert block.type == "tool_use" and (block.name, block.input) == ("search", args)
    assert final.stop_reason == "tool_use"


def test_anthropic_rate_limit(anthropic_fake: FakeProvider, claude: anthropic.Anthropic) -> None:
    anthropic_fake.queue(
        Fault(429, "Number of requests has exceeded your rate limit", retry_after=7)
    )
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.messages.create(model="claude-x-1", max_tokens=64, messages=CLAUDE_USER)
    error = caught.value
    assert error.response.headers["retry-after"] == "7"
    assert error.request_id is not None and error.request_id.startswith("req_")
    assert isinstance(error.body, dict)
    assert error.body["type"] == "error"
    assert error.body["error"] == {
        "type": "rate_limit_error",
        "message": "Number of requests has exceeded your rate limit",
    }


def test_anthropic_overloaded(anthropic_fake: FakeProvider, claude: anthropic.Anthropic) -> None:
    anthropic_fake.queue(Fault(529, "Overloaded"))
    with pytest.raises(anthropic.OverloadedError) as caught:
        claude.messages.create(model="claude-x-1", max_tokens=64, messages=CLAUDE_USER)
    assert isinstance(caught.value, anthropic.InternalServerError)  # so the SDK would retry it
    assert caught.value.status_code == 529
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "overloaded_error"


def test_anthropic_wrong_key(anthropic_fake: FakeProvider) -> None:
    with (
        anthropic.Anthropic(base_url=anthropic_fake.url, api_key="nope", max_retries=0) as bad,
        pytest.raises(anthropic.AuthenticationError) as caught,
    ):
        bad.messages.create(model="claude-x-1", max_tokens=64, messages=CLAUDE_USER)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_anthropic_headers_checked(anthropic_fake: FakeProvider) -> None:
    """x-api-key is the documented credential; anthropic-version is mandatory."""
    url, body = endpoint(anthropic_fake), request_body(anthropic_fake)
    ok = httpx.post(url, headers=auth(anthropic_fake), json=body)
    wrong = httpx.post(url, headers={**auth(anthropic_fake), "x-api-key": "nope"}, json=body)
    unversioned = httpx.post(url, headers={"x-api-key": KEY}, json=body)
    assert ok.status_code == 200
    assert wrong.status_code == 401
    assert unversioned.status_code == 400
    assert unversioned.json()["error"]["type"] == "invalid_request_error"
    assert anthropic_fake.requests[-1].headers["x-api-key"] == KEY


def test_anthropic_requires_max_tokens(anthropic_fake: FakeProvider) -> None:
    body = request_body(anthropic_fake)
    del body["max_tokens"]
    response = httpx.post(endpoint(anthropic_fake), headers=auth(anthropic_fake), json=body)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }


@pytest.mark.parametrize(
    ("stop", "openai_finish"),
    [("max_tokens", "length"), ("stop_sequence", "stop"), ("end_turn", "stop")],
)
def test_stop_reasons(
    openai_fake: FakeProvider,
    oai: openai.OpenAI,
    anthropic_fake: FakeProvider,
    claude: anthropic.Anthropic,
    stop: Any,
    openai_finish: str,
) -> None:
    openai_fake.queue(Reply("cut", stop_reason=stop))
    anthropic_fake.queue(Reply("cut", stop_reason=stop))
    completion = oai.chat.completions.create(model="gpt-4o-mini", messages=OPENAI_USER)
    message = claude.messages.create(
        model="claude-x-1", max_tokens=64, messages=CLAUDE_USER, stop_sequences=["END"]
    )
    assert completion.choices[0].finish_reason == openai_finish
    assert message.stop_reason == stop
    assert message.stop_sequence == ("END" if stop == "stop_sequence" else None)


# ---- transport behaviour, with plain httpx ----------------------------------------------------


@pytest.fixture(params=["openai", "anthropic"])
def fake(
    request: pytest.FixtureRequest, servers: dict[str, FakeProvider]
) -> Iterator[FakeProvider]:
    yield from fresh(servers[request.param])


def test_queue_order_then_echo(fake: FakeProvider) -> None:
    fake.queue(Reply("one"), Reply("two"))
    texts = []
    for _ in range(3):
        payload = httpx.post(endpoint(fake), headers=auth(fake), json=request_body(fake)).json()
        if fake.api == "openai":
            texts.append(payload["choices"][0]["message"]["content"])
        else:
            texts.append(payload["content"][0]["text"])
    assert texts == ["one", "two", "You said: Say hi"]
    assert len(fake.requests) == 3


def test_gate_holds_everything_after_first_content_chunk(fake: FakeProvider) -> None:
    text = "alpha beta gamma delta"
    gate = threading.Event()
    fake.queue(Reply(text, chunks=3, gate=gate))
    received: list[tuple[float, str]] = []
    first_content = threading.Event()

    def read() -> None:
        with httpx.stream(
            "POST", endpoint(fake), headers=auth(fake), json=request_body(fake, stream=True)
        ) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    received.append((time.monotonic(), line))
                    payload = data_of(line)
                    if payload is not None and content_piece(payload):
                        first_content.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert first_content.wait(5), "the first content chunk was not flushed before the gate"
    time.sleep(0.3)  # room for anything wrongly sent past the gate to arrive
    held = list(received)
    released_at = time.monotonic()
    gate.set()
    reader.join(5)
    assert not reader.is_alive()

    held_pieces = pieces_of([line for _, line in held])
    assert len(held_pieces) == 1 and text.startswith(held_pieces[0])
    assert pieces_of([held[-1][1]]) == held_pieces  # the content chunk is the last thing held
    after = received[len(held) :]
    assert after, "nothing arrived after the gate opened"
    assert all(at >= released_at for at, _ in after)
    assert "".join(pieces_of([line for _, line in received])) == text


def test_reset_drops_the_connection(fake: FakeProvider) -> None:
    fake.queue(Fault(kind="reset"))
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.post(endpoint(fake), headers=auth(fake), json=request_body(fake))
    # The fake itself survives and answers the next request.
    assert httpx.post(endpoint(fake), headers=auth(fake), json=request_body(fake)).is_success


def test_reset_is_a_connection_error_for_the_sdk(
    oai: openai.OpenAI, openai_fake: FakeProvider
) -> None:
    openai_fake.queue(Fault(kind="reset"))
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="gpt-4o-mini", messages=OPENAI_USER)


def test_truncate_stream_breaks_off_without_end_event(fake: FakeProvider) -> None:
    fake.queue(Fault(kind="truncate"))
    lines: list[str] = []
    with (
        httpx.stream(
            "POST", endpoint(fake), headers=auth(fake), json=request_body(fake, stream=True)
        ) as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            lines.append(line)  # noqa: PERF402 - one by one, so lines read before the drop stay
    assert pieces_of(lines), "a truncated stream still starts with content"
    assert "data: [DONE]" not in lines
    assert "event: message_stop" not in lines


def test_truncate_whole_response(fake: FakeProvider) -> None:
    fake.queue(Fault(kind="truncate"))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(endpoint(fake), headers=auth(fake), json=request_body(fake))


def test_garbage_is_200_and_not_json(fake: FakeProvider) -> None:
    fake.queue(Fault(kind="garbage"))
    response = httpx.post(endpoint(fake), headers=auth(fake), json=request_body(fake))
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_delay_holds_the_response(fake: FakeProvider) -> None:
    fake.queue(Reply("late", delay=0.5), Reply("on time", delay=0.2))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(endpoint(fake), headers=auth(fake), json=request_body(fake), timeout=0.2)
    started = time.monotonic()
    response = httpx.post(endpoint(fake), headers=auth(fake), json=request_body(fake), timeout=5)
    assert response.is_success
    assert time.monotonic() - started >= 0.2


def test_the_openai_fake_speaks_the_responses_api_to_the_sdk() -> None:
    with FakeProvider("openai") as fake:
        client = openai.OpenAI(base_url=fake.url + "/v1", api_key="test-key", max_retries=0)
        fake.queue(Reply("Plain answer."), Reply("streamed answer", chunks=3))
        response = client.responses.create(model="gpt-4o", input="hi")
        assert response.output_text == "Plain answer."
        with client.responses.stream(model="gpt-4o", input="hi") as stream:
            final = stream.get_final_response()
        assert final.output_text == "streamed answer"
        assert [r.path for r in fake.requests] == ["/v1/responses", "/v1/responses"]
