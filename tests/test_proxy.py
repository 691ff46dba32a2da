"""The proxy end to end: official SDKs → turnout → fake providers, with routing and failover."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
from conftest import ServerThread, free_port
from fakes import FakeProvider, Fault, Reply, ToolCall

from turnout.config import Config, parse_config
from turnout.routing.decision import RoutingService
from turnout.routing.embedded import EmbeddedRouter
from turnout.server.app import create_app

KEY = "sk-upstream-secret"
CODE_PROMPT = "Write a Python function that implements binary search on a sorted array"


def gateway_config(openai_url: str, anthropic_url: str) -> Config:
    return parse_config(
        f"""
version: v0.4.0
model_providers:
  - model: openai/gpt-4o-mini
    base_url: {openai_url}
    access_key: $KEY
    default: true
    timeouts: {{connect: 1, read: 1}}
  - model: openai/gpt-4o
    base_url: {openai_url}
    access_key: $KEY
    timeouts: {{connect: 1, read: 1}}
  - model: vllm/qwen3
    base_url: {openai_url}
    access_key: $KEY
  - model: anthropic/claude-sonnet-4-20250514
    base_url: {anthropic_url}
    access_key: $KEY
  - model: anthropic/claude-haiku-4-5
    base_url: {anthropic_url}
    access_key: $KEY
routing_preferences:
  - name: code_generation
    description: generating new code, writing functions, or creating boilerplate
    models: [openai/gpt-4o, openai/gpt-4o-mini]
""",
        env={"KEY": KEY},
    )


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeProvider, FakeProvider]]:
    with FakeProvider("openai", api_key=KEY) as oa, FakeProvider("anthropic", api_key=KEY) as an:
        yield oa, an


@pytest.fixture
def gateway_url(fakes: tuple[FakeProvider, FakeProvider], router: EmbeddedRouter) -> Iterator[str]:
    """A fresh gateway per test, so one test's cooldowns do not steer the next."""
    oa, an = fakes
    service = RoutingService(gateway_config(oa.url, an.url), router)
    service.prepare()
    with ServerThread(create_app(service), free_port()) as server:
        yield server.url


@pytest.fixture
def cleared(fakes: tuple[FakeProvider, FakeProvider]) -> tuple[FakeProvider, FakeProvider]:
    for fake in fakes:
        fake.clear()
    return fakes


@pytest.fixture
def upstream(cleared: tuple[FakeProvider, FakeProvider]) -> FakeProvider:
    return cleared[0]


@pytest.fixture
def anthropic_upstream(cleared: tuple[FakeProvider, FakeProvider]) -> FakeProvider:
    return cleared[1]


@pytest.fixture
def oai(gateway_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway_url + "/v1", api_key="client-key", max_retries=0)


@pytest.fixture
def claude(gateway_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway_url, api_key="client-key", max_retries=0)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_openai_sdk_text_through_the_gateway(oai: openai.OpenAI, upstream: FakeProvider) -> None:
    upstream.queue(Reply("Paris."))
    raw = oai.chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=user("capital of France?")
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Paris."
    assert raw.headers["x-turnout-model"] == "openai/gpt-4o-mini"
    assert raw.headers["x-turnout-attempts"] == "1"
    sent = upstream.requests[-1]
    assert sent.body["model"] == "gpt-4o-mini"
    assert sent.headers["authorization"] == f"Bearer {KEY}"


def test_x_request_id_is_turnouts_trace_id_and_the_providers_is_kept(
    oai: openai.OpenAI, upstream: FakeProvider
) -> None:
    """OpenAI answers with its own x-request-id; the client's is turnout's trace id, the one in
    the access log and the trace, as it is for a stream."""
    upstream.queue(Reply("Paris."), Reply("Paris.", chunks=2))
    whole = oai.chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=user("capital of France?")
    )
    with oai.chat.completions.with_streaming_response.create(
        model="openai/gpt-4o-mini", messages=user("capital of France?"), stream=True
    ) as streamed:
        list(streamed.iter_lines())
    for raw in (whole, streamed):
        assert re.fullmatch(r"[0-9a-f]{32}", raw.headers["x-request-id"])
        assert raw.headers["x-upstream-request-id"].startswith("req_")
    assert whole.headers["x-request-id"] != streamed.headers["x-request-id"]


def test_the_router_picks_the_route_and_says_so(oai: openai.OpenAI, upstream: FakeProvider) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=user(CODE_PROMPT)
    )
    assert raw.headers["x-turnout-route"] == "code_generation"
    assert raw.headers["x-turnout-model"] == "openai/gpt-4o"
    assert upstream.requests[-1].body["model"] == "gpt-4o"


def test_the_body_passes_through_except_model_and_routing_preferences(
    oai: openai.OpenAI, upstream: FakeProvider
) -> None:
    prefs = [{"name": "t", "description": "translating text", "models": ["openai/gpt-4o"]}]
    oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=user("hello"),
        temperature=0.3,
        extra_body={"routing_preferences": prefs, "some_future_field": {"kept": True}},
    )
    body = upstream.requests[-1].body
    assert "routing_preferences" not in body
    assert body["some_future_field"] == {"kept": True}
    assert body["temperature"] == 0.3


def test_openai_streaming_is_relayed(oai: openai.OpenAI, upstream: FakeProvider) -> None:
    upstream.queue(Reply("one two three four", chunks=4))
    stream = oai.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=user("hey!"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert chunks[-1].usage is not None


def test_tool_call_round_trip(oai: openai.OpenAI, upstream: FakeProvider) -> None:
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]
    upstream.queue(
        Reply(tool_call=ToolCall("get_weather", {"city": "Oslo"})), Reply("It is sunny.")
    )
    first = oai.chat.completions.create(
        model="gpt-4o-mini", messages=user("weather in Oslo?"), tools=tools
    )
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    messages = [
        *user("weather in Oslo?"),
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    second = oai.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
    assert second.choices[0].message.content == "It is sunny."
    assert upstream.requests[-1].body["messages"][2]["tool_call_id"] == call.id


def test_anthropic_sdk_text_and_stream(
    claude: anthropic.Anthropic, anthropic_upstream: FakeProvider
) -> None:
    anthropic_upstream.queue(Reply("Bonjour."), Reply("a b c", chunks=3))
    message = claude.messages.create(
        model="anthropic/claude-sonnet-4-20250514", max_tokens=50, messages=user("say hi in French")
    )
    assert message.content[0].text == "Bonjour."
    with claude.messages.stream(
        model="claude-haiku-4-5", max_tokens=50, messages=user("hello again!")
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "a b c"
    assert final.usage.output_tokens > 0
    assert anthropic_upstream.requests[-1].body["model"] == "claude-haiku-4-5"
    assert anthropic_upstream.requests[-1].headers["x-api-key"] == KEY


def test_429_fails_over_to_the_next_candidate(oai: openai.OpenAI, upstream: FakeProvider) -> None:
    upstream.queue(Fault(429, "slow down"), Reply("from the fallback"))
    raw = oai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=user(CODE_PROMPT)
    )
    assert raw.parse().choices[0].message.content == "from the fallback"
    assert raw.headers["x-turnout-attempts"] == "2"
    assert raw.headers["x-turnout-model"] == "openai/gpt-4o-mini"
    assert [r.body["model"] for r in upstream.requests] == ["gpt-4o", "gpt-4o-mini"]


def test_retry_after_cools_a_model_down(oai: openai.OpenAI, upstream: FakeProvider) -> None:
    upstream.queue(Fault(429, "cool it", retry_after=30), Reply("ok"), Reply("ok again"))
    oai.chat.completions.create(model="gpt-4o-mini", messages=user(CODE_PROMPT + " in Go"))
    oai.chat.completions.create(model="gpt-4o-mini", messages=user(CODE_PROMPT + " in Rust"))
    assert [r.body["model"] for r in upstream.requests] == ["gpt-4o", "gpt-4o-mini", "gpt-4o-mini"]


def test_500_everywhere_surfaces_as_the_sdks_own_error(
    oai: openai.OpenAI, upstream: FakeProvider
) -> None:
    upstream.queue(Fault(500, "boom one"), Fault(503, "boom two"))
    with pytest.raises(openai.InternalServerError) as caught:
        oai.chat.completions.create(model="gpt-4o-mini", messages=user(CODE_PROMPT))
    assert caught.value.status_code == 503
    assert "boom two" in caught.value.message
    assert caught.value.response.headers["x-turnout-attempts"] == "2"


def test_anthropic_errors_are_in_anthropics_envelope(
    claude: anthropic.Anthropic, anthropic_upstream: FakeProvider
) -> None:
    anthropic_upstream.queue(Fault(429, "rate limited"))
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=user("hi"))
    assert "rate limited" in caught.value.message


def test_a_timeout_fails_over(oai: openai.OpenAI, upstream: FakeProvider) -> None:
    upstream.queue(Reply("too late", delay=2.0), Reply("in time"))
    completion = oai.chat.completions.create(model="gpt-4o-mini", messages=user(CODE_PROMPT))
    assert completion.choices[0].message.content == "in time"


def test_a_reset_connection_fails_over(oai: openai.OpenAI, upstream: FakeProvider) -> None:
    upstream.queue(Fault(kind="reset"), Reply("after the reset"))
    completion = oai.chat.completions.create(model="gpt-4o-mini", messages=user(CODE_PROMPT))
    assert completion.choices[0].message.content == "after the reset"


def test_garbage_from_upstream_is_a_502(gateway_url: str, upstream: FakeProvider) -> None:
    upstream.queue(Fault(kind="garbage"))
    response = httpx.post(
        gateway_url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user("hi")}
    )
    assert response.status_code == 502
    assert "not JSON" in response.json()["error"]["message"]


def test_a_truncated_stream_ends_with_an_error_event(
    gateway_url: str, upstream: FakeProvider
) -> None:
    upstream.queue(Fault(kind="truncate"))
    body = {"model": "gpt-4o-mini", "messages": user("hi"), "stream": True}
    with httpx.stream("POST", gateway_url + "/v1/chat/completions", json=body) as response:
        lines = [line for line in response.iter_lines() if line]
    assert '"error"' in lines[-1]
    assert "data: [DONE]" not in lines


def test_chunks_are_forwarded_without_buffering(gateway_url: str, upstream: FakeProvider) -> None:
    gate = threading.Event()
    upstream.queue(Reply("first second third", chunks=3, gate=gate))
    body = {"model": "gpt-4o-mini", "messages": user("hi"), "stream": True}
    with httpx.stream(
        "POST", gateway_url + "/v1/chat/completions", json=body, timeout=10
    ) as response:
        lines = response.iter_lines()
        received = []
        for line in lines:
            received.append(line)
            if '"content":"first' in line.replace(" ", ""):
                break
        assert not gate.is_set(), "the first chunk arrived before the upstream sent the rest"
        gate.set()
        rest = list(lines)
    assert any("[DONE]" in line for line in rest)


def test_an_unknown_model_is_a_400_naming_the_configured_ones(
    oai: openai.OpenAI, upstream: FakeProvider
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model="openai/gpt-5", messages=user("hello"))
    assert "openai/gpt-4o-mini" in caught.value.message
    assert upstream.requests == []


def test_openai_sdk_reaches_an_anthropic_model(
    oai: openai.OpenAI, anthropic_upstream: FakeProvider
) -> None:
    anthropic_upstream.queue(Reply("Translated both ways."))
    raw = oai.chat.completions.with_raw_response.create(
        model="anthropic/claude-haiku-4-5",
        messages=[{"role": "system", "content": "Be brief."}, *user("hello")],
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Translated both ways."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens > 0
    assert raw.headers["x-turnout-model"] == "anthropic/claude-haiku-4-5"
    sent = anthropic_upstream.requests[-1].body
    assert sent["system"] == "Be brief." and sent["max_tokens"] > 0
    assert sent["model"] == "claude-haiku-4-5"


def test_openai_sdk_streams_from_an_anthropic_model(
    oai: openai.OpenAI, anthropic_upstream: FakeProvider
) -> None:
    anthropic_upstream.queue(Reply("alpha beta gamma", chunks=3))
    stream = oai.chat.completions.create(
        model="claude-haiku-4-5",
        messages=user("hi there!"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "alpha beta gamma"
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_openai_tool_round_trip_through_an_anthropic_model(
    oai: openai.OpenAI, anthropic_upstream: FakeProvider
) -> None:
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]
    anthropic_upstream.queue(
        Reply(tool_call=ToolCall("get_weather", {"city": "Oslo"})), Reply("Sunny in Oslo.")
    )
    first = oai.chat.completions.create(
        model="claude-haiku-4-5", messages=user("weather in Oslo?"), tools=tools
    )
    call = first.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Oslo"},
    )
    assert first.choices[0].finish_reason == "tool_calls"
    messages = [
        *user("weather in Oslo?"),
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    second = oai.chat.completions.create(model="claude-haiku-4-5", messages=messages, tools=tools)
    assert second.choices[0].message.content == "Sunny in Oslo."
    result = anthropic_upstream.requests[-1].body["messages"][-1]["content"][0]
    assert (result["type"], result["tool_use_id"]) == ("tool_result", call.id)


def test_images_reach_an_anthropic_model(
    oai: openai.OpenAI, anthropic_upstream: FakeProvider
) -> None:
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    content = [
        {"type": "text", "text": "what is in these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    oai.chat.completions.create(
        model="claude-haiku-4-5",
        messages=[{"role": "user", "content": content}],
        extra_body={"routing_preferences": []},  # no routes: the request's own model
    )
    blocks = anthropic_upstream.requests[-1].body["messages"][0]["content"]
    assert blocks[1]["source"] == {"type": "base64", "media_type": "image/png", "data": png}
    assert blocks[2]["source"] == {"type": "url", "url": "https://example.com/cat.jpg"}


def test_anthropic_sdk_reaches_an_openai_model(
    claude: anthropic.Anthropic, upstream: FakeProvider
) -> None:
    upstream.queue(Reply("From the OpenAI side."), Reply("streamed reply here", chunks=3))
    message = claude.messages.create(
        model="openai/gpt-4o-mini", max_tokens=64, system="Be brief.", messages=user("hi")
    )
    assert message.content[0].text == "From the OpenAI side."
    assert message.stop_reason == "end_turn"
    assert upstream.requests[-1].body["messages"][0] == {"role": "system", "content": "Be brief."}
    with claude.messages.stream(
        model="gpt-4o-mini", max_tokens=64, messages=user("hello!")
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "streamed reply here"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


def test_anthropic_tool_use_from_an_openai_model(
    claude: anthropic.Anthropic, upstream: FakeProvider
) -> None:
    upstream.queue(Reply(tool_call=ToolCall("lookup", {"q": "turnout"})))
    tools = [{"name": "lookup", "description": "search", "input_schema": {"type": "object"}}]
    message = claude.messages.create(
        model="gpt-4o-mini", max_tokens=64, tools=tools, messages=user("look it up")
    )
    block = message.content[-1]
    assert (block.type, block.name, block.input) == ("tool_use", "lookup", {"q": "turnout"})
    assert message.stop_reason == "tool_use"
    assert upstream.requests[-1].body["tools"][0]["function"]["name"] == "lookup"


def test_cross_format_errors_use_the_clients_envelope(
    claude: anthropic.Anthropic, upstream: FakeProvider
) -> None:
    upstream.queue(Fault(429, "openai says slow down"))
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.messages.create(model="gpt-4o-mini", max_tokens=10, messages=user("hi"))
    assert "openai says slow down" in caught.value.message


def test_a_truncated_translated_stream_ends_with_an_error_event(
    gateway_url: str, upstream: FakeProvider
) -> None:
    upstream.queue(Fault(kind="truncate"))
    body = {"model": "gpt-4o-mini", "max_tokens": 10, "messages": user("hi"), "stream": True}
    headers = {"anthropic-version": "2023-06-01"}
    with httpx.stream("POST", gateway_url + "/v1/messages", json=body, headers=headers) as response:
        lines = [line for line in response.iter_lines() if line]
    assert "event: error" in lines
    assert "event: message_stop" not in lines


def test_responses_api_passes_through_to_openai_untouched(
    oai: openai.OpenAI, upstream: FakeProvider
) -> None:
    upstream.queue(Reply("Native Responses."), Reply("streamed natively", chunks=3))
    response = oai.responses.create(
        model="gpt-4o-mini",
        instructions="Be brief.",
        input="hello!",
        extra_body={"previous_response_id": "resp_earlier", "some_future_field": 1},
    )
    assert response.output_text == "Native Responses."
    sent = upstream.requests[-1]
    assert sent.path == "/v1/responses"
    assert (
        sent.body["previous_response_id"] == "resp_earlier" and sent.body["some_future_field"] == 1
    )
    assert sent.body["model"] == "gpt-4o-mini" and sent.body["instructions"] == "Be brief."
    with oai.responses.stream(model="gpt-4o-mini", input="hi there!") as stream:
        assert stream.get_final_response().output_text == "streamed natively"


def test_responses_api_to_a_chat_only_server(oai: openai.OpenAI, upstream: FakeProvider) -> None:
    upstream.queue(Reply("Answered via chat."))
    response = oai.responses.create(model="vllm/qwen3", instructions="Be brief.", input="hello!")
    assert response.output_text == "Answered via chat."
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_responses_api_streams_from_an_anthropic_model(
    oai: openai.OpenAI, anthropic_upstream: FakeProvider
) -> None:
    anthropic_upstream.queue(Reply("two hops away", chunks=3))
    with oai.responses.stream(model="claude-haiku-4-5", input="hi there!") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "two hops away"
    assert final.output_text == "two hops away" and final.status == "completed"
    assert anthropic_upstream.requests[-1].body["messages"][0]["role"] == "user"


def test_responses_api_function_call_from_an_anthropic_model(
    oai: openai.OpenAI, anthropic_upstream: FakeProvider
) -> None:
    anthropic_upstream.queue(Reply(tool_call=ToolCall("lookup", {"q": "turnout"})))
    tools = [
        {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}
    ]
    response = oai.responses.create(model="claude-haiku-4-5", input="hi!", tools=tools)
    call = next(item for item in response.output if item.type == "function_call")
    assert (call.name, json.loads(call.arguments)) == ("lookup", {"q": "turnout"})


def test_secrets_never_reach_the_client(gateway_url: str, upstream: FakeProvider) -> None:
    upstream.queue(Fault(401, "bad key"))
    response = httpx.post(
        gateway_url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user("hi")}
    )
    assert response.status_code == 401
    assert KEY not in response.text
    assert KEY not in str(response.headers)


def test_a_client_that_disconnects_closes_the_upstream_stream(
    gateway_url: str, upstream: FakeProvider
) -> None:
    """vllm/qwen3 has the default read timeout (minutes), so only the client's leaving can close
    the upstream stream within the test's 5 s (gpt-4o-mini's 1 s timeout would close it too)."""
    gate = threading.Event()
    upstream.queue(Reply("first second third", chunks=3, gate=gate))
    body = {"model": "vllm/qwen3", "messages": user("hi"), "stream": True}
    with httpx.stream(
        "POST", gateway_url + "/v1/chat/completions", json=body, timeout=10
    ) as response:
        for line in response.iter_lines():
            if '"content":"first' in line.replace(" ", ""):
                # here, not after the loop: leaving iter_lines closes httpx's connection
                assert upstream.open_streams == 1
                break
    deadline = time.monotonic() + 5
    while upstream.open_streams and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.open_streams == 0, "the upstream stream outlived its client"
    assert not gate.is_set()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses"])
def test_bad_bodies_are_refused_before_any_upstream_call(
    gateway_url: str, upstream: FakeProvider, path: str
) -> None:
    for content, status in [(b"{not json", 400), (b"[]", 400), (b"x" * (9 * 1024 * 1024), 413)]:
        response = httpx.post(
            gateway_url + path, content=content, headers={"content-type": "application/json"}
        )
        assert response.status_code == status
        assert "error" in response.json()
    assert upstream.requests == []
