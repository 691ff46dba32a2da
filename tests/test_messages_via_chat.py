"""Anthropic Messages clients served by an OpenAI chat provider: requests, responses, streams.

What the translation produces is checked against the official SDKs' own types: `anthropic`
for the responses and stream events the client reads, `openai` for the request the provider
reads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from openai.types.chat import completion_create_params
from pydantic import TypeAdapter

from turnout.apis import messages_via_chat
from turnout.apis.errors import RequestError

MODEL = "qwen2.5-72b-instruct"
CLIENT_MODEL = "claude-sonnet-4-5"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string", "description": "City and country"}},
        "required": ["location"],
    },
}
WEATHER_FUNCTION = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": WEATHER_TOOL["input_schema"],
    },
}

_CHAT_REQUEST = TypeAdapter(completion_create_params.CompletionCreateParamsNonStreaming)
_CHAT_STREAM_REQUEST = TypeAdapter(completion_create_params.CompletionCreateParamsStreaming)
_STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(anthropic.types.RawMessageStreamEvent)


def messages_body(**fields: Any) -> dict[str, Any]:
    """A Messages request as a client sends it, with `fields` added or replaced."""
    return {
        "model": CLIENT_MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hello"}],
        **fields,
    }


def _materialize(value: Any) -> Any:
    """Run pydantic's lazy validators of `Iterable` fields (the openai params use them)."""
    if isinstance(value, dict):
        return {key: _materialize(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, Iterator)):
        return [_materialize(item) for item in value]
    return value


def valid_chat_request(chat: dict[str, Any]) -> dict[str, Any]:
    """`chat`, after checking the openai SDK's request params type accepts all of it."""
    adapter = _CHAT_STREAM_REQUEST if chat.get("stream") else _CHAT_REQUEST
    _materialize(adapter.validate_python(chat))
    return chat


def translate(body: dict[str, Any]) -> dict[str, Any]:
    return valid_chat_request(messages_via_chat.request(body, MODEL))


# --- request: the conversation ------------------------------------------------------------


def test_system_string_becomes_the_first_message_and_model_is_the_providers() -> None:
    chat = translate(messages_body(system="You are a terse assistant."))
    assert chat["model"] == MODEL
    assert chat["messages"] == [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Hello"},
    ]
    assert chat["max_tokens"] == 1024


def test_system_text_blocks_are_joined_into_one_system_message() -> None:
    system = [
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
        {"type": "text", "text": "Answer in English."},
    ]
    chat = translate(messages_body(system=system))
    assert chat["messages"][0] == {
        "role": "system",
        "content": "You are Claude Code, Anthropic's official CLI for Claude.\nAnswer in English.",
    }
    assert len(chat["messages"]) == 2


def test_text_and_images_become_content_parts() -> None:
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "What is in these images?"},
    ]
    chat = translate(messages_body(messages=[{"role": "user", "content": content}]))
    assert chat["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                {"type": "text", "text": "What is in these images?"},
            ],
        }
    ]


def test_text_only_blocks_become_a_plain_string() -> None:
    content = [
        {"type": "text", "text": "<system-reminder>Be brief.</system-reminder>"},
        {"type": "text", "text": "List three primes."},
    ]
    chat = translate(messages_body(messages=[{"role": "user", "content": content}]))
    assert chat["messages"] == [
        {
            "role": "user",
            "content": "<system-reminder>Be brief.</system-reminder>\nList three primes.",
        }
    ]


def test_a_tool_round_trip_becomes_tool_calls_then_tool_messages() -> None:
    messages = [
        {"role": "user", "content": "What's the weather in Paris and in Oslo?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "I'll check both cities."},
                {
                    "type": "tool_use",
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "name": "get_weather",
                    "input": {"location": "Paris, France"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_01B7hqF1Lg3yBpCL6oViwPxZ",
                    "name": "get_weather",
                    "input": {"location": "Oslo, Norway"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
                    "content": "15 degrees, light rain",
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01B7hqF1Lg3yBpCL6oViwPxZ",
                    "content": [{"type": "text", "text": "weather service timed out"}],
                    "is_error": True,
                },
                {"type": "text", "text": "Use Celsius please."},
            ],
        },
    ]
    chat = translate(messages_body(messages=messages, tools=[WEATHER_TOOL]))
    assert chat["messages"] == [
        {"role": "user", "content": "What's the weather in Paris and in Oslo?"},
        {
            "role": "assistant",
            "content": "I'll check both cities.",
            "tool_calls": [
                {
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"location": "Paris, France"}',
                    },
                },
                {
                    "id": "toolu_01B7hqF1Lg3yBpCL6oViwPxZ",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"location": "Oslo, Norway"}',
                    },
                },
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "toolu_01A09q90qw90lq917835lq9",
            "content": "15 degrees, light rain",
        },
        {
            "role": "tool",
            "tool_call_id": "toolu_01B7hqF1Lg3yBpCL6oViwPxZ",
            "content": "Error: weather service timed out",
        },
        {"role": "user", "content": "Use Celsius please."},
    ]
    assert chat["tools"] == [WEATHER_FUNCTION]


def test_an_assistant_turn_of_only_tool_use_has_null_content_and_arguments_round_trip() -> None:
    tool_input = {"query": "naïve café", "limit": 3, "filters": {"open": True}}
    messages = [
        {"role": "user", "content": "Find cafés"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "search", "input": tool_input}
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]},
    ]
    chat = translate(messages_body(messages=messages))
    assistant, tool = chat["messages"][1:]
    assert assistant["content"] is None
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == tool_input
    assert tool == {"role": "tool", "tool_call_id": "toolu_1", "content": ""}
    assert len(chat["messages"]) == 3  # no empty user message after the tool result


def test_images_returned_by_a_tool_ride_in_the_following_user_message() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_shot",
        "content": [{"type": "text", "text": "screenshot taken"}, image],
    }
    messages = [
        {"role": "user", "content": "Take a screenshot"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_shot", "name": "screenshot", "input": {}}
            ],
        },
        {"role": "user", "content": [result]},
    ]
    chat = translate(messages_body(messages=messages))
    assert chat["messages"][2:] == [
        {"role": "tool", "tool_call_id": "toolu_shot", "content": "screenshot taken"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
            ],
        },
    ]


# --- request: parameters -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "get_weather"},
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        ),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"tool_choice": "auto", "parallel_tool_calls": False},
        ),
        (
            {"type": "any", "disable_parallel_tool_use": False},
            {"tool_choice": "required"},
        ),
    ],
)
def test_tool_choice(tool_choice: dict[str, Any], expected: dict[str, Any]) -> None:
    chat = translate(messages_body(tools=[WEATHER_TOOL], tool_choice=tool_choice))
    assert {key: chat[key] for key in ("tool_choice", "parallel_tool_calls") if key in chat} == (
        expected
    )


def test_stop_sequences_sampling_and_user() -> None:
    body = messages_body(
        stop_sequences=["\n\nHuman:", "END"],
        temperature=0.2,
        top_p=0.9,
        metadata={"user_id": "user-8c1f"},
    )
    chat = translate(body)
    assert chat["stop"] == ["\n\nHuman:", "END"]
    assert (chat["temperature"], chat["top_p"], chat["user"]) == (0.2, 0.9, "user-8c1f")
    assert "stream" not in chat and "stream_options" not in chat


def test_stream_asks_for_the_usage_chunk() -> None:
    chat = translate(messages_body(stream=True))
    assert chat["stream"] is True
    assert chat["stream_options"] == {"include_usage": True}


def test_what_chat_cannot_express_is_dropped_and_logged_once_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = {"type": "ephemeral"}
    body = messages_body(
        system=[{"type": "text", "text": "Long shared prefix.", "cache_control": cache}],
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "A memo."},
                    },
                    {"type": "text", "text": "Summarise the memo.", "cache_control": cache},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "The memo is short.", "signature": "EqQB"},
                    {"type": "redacted_thinking", "data": "EmwKAhgB"},
                    {"type": "text", "text": "It is a memo."},
                ],
            },
            {"role": "user", "content": "Shorter."},
        ],
        top_k=40,
        thinking={"type": "enabled", "budget_tokens": 2048},
        tools=[
            WEATHER_TOOL,
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        ],
        service_tier="auto",
    )
    with caplog.at_level(logging.WARNING, logger="turnout.translate"):
        chat = translate(body)
    assert set(chat) == {"model", "messages", "max_tokens", "tools"}
    assert chat["tools"] == [WEATHER_FUNCTION]
    assert chat["messages"] == [
        {"role": "system", "content": "Long shared prefix."},
        {"role": "user", "content": "Summarise the memo."},
        {"role": "assistant", "content": "It is a memo."},
        {"role": "user", "content": "Shorter."},
    ]
    warnings = [r.getMessage() for r in caplog.records if r.name == "turnout.translate"]
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    for name in (
        "`top_k`",
        "`thinking`",
        "`service_tier`",
        "`web_search_20250305`",
        "`document`",
        "`redacted_thinking`",
        "`cache_control`",
    ):
        assert any(name in message for message in warnings), name
    assert len(warnings) == len(set(warnings))  # cache_control twice on text blocks, one warning


def test_nothing_is_logged_when_nothing_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    body = messages_body(
        system="Be brief.",
        tools=[WEATHER_TOOL],
        tool_choice={"type": "auto"},
        thinking={"type": "disabled"},
        stream=True,
    )
    with caplog.at_level(logging.DEBUG, logger="turnout.translate"):
        translate(body)
    assert caplog.records == []


def test_tool_choice_without_function_tools_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    body = messages_body(
        tools=[{"type": "web_search_20250305", "name": "web_search"}],
        tool_choice={"type": "any"},
    )
    with caplog.at_level(logging.WARNING, logger="turnout.translate"):
        chat = translate(body)
    assert "tools" not in chat and "tool_choice" not in chat
    assert any("`tool_choice`" in record.getMessage() for record in caplog.records)


def test_a_malformed_block_is_refused_with_its_path() -> None:
    body = messages_body(messages=[{"role": "user", "content": [{"type": "image"}]}])
    with pytest.raises(RequestError) as caught:
        messages_via_chat.request(body, MODEL)
    assert caught.value.param == "messages[0].content[0].source"


# --- response ------------------------------------------------------------------------------


def chat_completion(
    message: dict[str, Any], finish_reason: str = "stop", usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A chat.completion as OpenAI returns it."""
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "qwen2.5-72b-instruct",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "refusal": None, "annotations": [], **message},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage
        or {
            "prompt_tokens": 19,
            "completion_tokens": 10,
            "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_50cad350e4",
    }


def translate_response(body: dict[str, Any]) -> dict[str, Any]:
    message = messages_via_chat.response(body, CLIENT_MODEL)
    anthropic.types.Message.model_validate(message)
    return message


def test_a_text_answer() -> None:
    message = translate_response(chat_completion({"content": "Hello! How can I help?"}))
    assert message == {
        "id": "msg_chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "type": "message",
        "role": "assistant",
        "model": CLIENT_MODEL,
        "content": [{"type": "text", "text": "Hello! How can I help?"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 19,
            "output_tokens": 10,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def test_tool_calls_become_tool_use_blocks() -> None:
    calls = [
        {
            "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location": "Paris, France"}'},
        },
        {
            "id": "call_ABtqm8Kw1vF6HvW3TBR8vD9Q",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location": "Oslo'},
        },
    ]
    body = chat_completion({"content": None, "tool_calls": calls}, finish_reason="tool_calls")
    message = translate_response(body)
    assert message["content"] == [
        {
            "type": "tool_use",
            "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
            "name": "get_weather",
            "input": {"location": "Paris, France"},
        },
        {
            "type": "tool_use",
            "id": "call_ABtqm8Kw1vF6HvW3TBR8vD9Q",
            "name": "get_weather",
            "input": {"_raw": '{"location": "Oslo'},
        },
    ]
    assert message["stop_reason"] == "tool_use"


def test_tool_arguments_that_are_not_an_object_are_kept_raw_and_empty_ones_are_empty() -> None:
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "a", "arguments": "[1, 2]"}},
        {"id": "call_2", "type": "function", "function": {"name": "b", "arguments": ""}},
    ]
    body = chat_completion({"content": "Calling.", "tool_calls": calls}, "tool_calls")
    blocks = translate_response(body)["content"]
    assert [block["type"] for block in blocks] == ["text", "tool_use", "tool_use"]
    assert [blocks[1]["input"], blocks[2]["input"]] == [{"_raw": "[1, 2]"}, {}]


def test_reasoning_content_leads_as_a_thinking_block() -> None:
    body = chat_completion(
        {"content": "It is 42.", "reasoning_content": "6 times 7 is 42, so the answer is 42."}
    )
    message = translate_response(body)
    assert message["content"] == [
        {"type": "thinking", "thinking": "6 times 7 is 42, so the answer is 42.", "signature": ""},
        {"type": "text", "text": "It is 42."},
    ]


def test_an_empty_answer_has_no_blocks() -> None:
    message = translate_response(chat_completion({"content": ""}, finish_reason="length"))
    assert message["content"] == []
    assert message["stop_reason"] == "max_tokens"


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        ("eos", "end_turn"),  # a server's own reason
    ],
)
def test_finish_reasons(finish_reason: str, stop_reason: str) -> None:
    message = translate_response(chat_completion({"content": "Hi"}, finish_reason))
    assert message["stop_reason"] == stop_reason
    assert message["stop_sequence"] is None


def test_stop_after_tool_calls_is_still_tool_use() -> None:
    calls = [{"id": "call_1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]
    message = translate_response(chat_completion({"content": None, "tool_calls": calls}, "stop"))
    assert message["stop_reason"] == "tool_use"


def test_cached_prompt_tokens_are_counted_apart() -> None:
    usage = {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }
    message = translate_response(chat_completion({"content": "Done."}, usage=usage))
    assert message["usage"] == {
        "input_tokens": 86,
        "output_tokens": 300,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1920,
    }


def test_usage_without_details_or_at_all() -> None:
    body = chat_completion({"content": "Hi"})
    body["usage"] = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    assert translate_response(body)["usage"]["input_tokens"] == 12
    del body["usage"]
    assert translate_response(body)["usage"]["output_tokens"] == 0


# --- stream --------------------------------------------------------------------------------

CHUNK_ID = "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG"


def chunk(delta: dict[str, Any] | None = None, finish_reason: str | None = None) -> str:
    """One chat.completion.chunk's data, as OpenAI streams it with include_usage on."""
    return json.dumps(
        {
            "id": CHUNK_ID,
            "object": "chat.completion.chunk",
            "created": 1741569952,
            "model": "gpt-4o-2024-08-06",
            "service_tier": "default",
            "system_fingerprint": "fp_eb9dce56a8",
            "choices": [
                {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": None,
        }
    )


def tool_piece(index: int, arguments: str, call_id: str = "", name: str = "") -> str:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return chunk({"tool_calls": [call]})


USAGE_CHUNK = json.dumps(
    {
        "id": CHUNK_ID,
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": "gpt-4o-2024-08-06",
        "choices": [],
        "usage": {
            "prompt_tokens": 182,
            "completion_tokens": 41,
            "total_tokens": 223,
            "prompt_tokens_details": {"cached_tokens": 128, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
    }
)

# Recorded shape of gpt-4o answering with text, then two parallel tool calls.
TOOL_STREAM = [
    chunk({"role": "assistant", "content": "", "refusal": None}),
    chunk({"content": "Let me"}),
    chunk({"content": " check the"}),
    chunk({"content": " weather."}),
    tool_piece(0, "", "call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather"),
    tool_piece(0, '{"lo'),
    tool_piece(0, 'cation": "Par'),
    tool_piece(0, 'is, France"}'),
    tool_piece(1, "", "call_ABtqm8Kw1vF6HvW3TBR8vD9Q", "get_weather"),
    tool_piece(1, '{"location": '),
    tool_piece(1, '"Oslo, Norway"}'),
    chunk(finish_reason="tool_calls"),
    USAGE_CHUNK,
    "[DONE]",
]


def decode(frames: list[bytes]) -> list[dict[str, Any]]:
    """Each frame's data, after checking the frame's shape and the event's SDK type."""
    events = []
    for frame in frames:
        text = frame.decode()
        assert text.endswith("\n\n") and text.count("\n") == 3, text
        name_line, data_line = text[:-2].split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        event = json.loads(data_line.removeprefix("data: "))
        assert event["type"] == name_line.removeprefix("event: ")
        if event["type"] not in ("ping", "error"):  # the SDK union leaves these two out
            _STREAM_EVENT.validate_python(event)
        events.append(event)
    return events


def run(data: list[str], *, finish: bool = True) -> tuple[list[dict[str, Any]], bool]:
    """Feed the events through one translator; the client's events and whether it completed."""
    translator = messages_via_chat.StreamTranslator(CLIENT_MODEL)
    frames = [frame for item in data for frame in translator.event("", item)]
    if finish:
        frames += translator.finish()
    return decode(frames), translator.complete


def reassemble(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The message a client builds from the events, checking their order on the way."""
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    message = events[0]["message"]
    assert message["content"] == [] and message["model"] == CLIENT_MODEL
    blocks: list[dict[str, Any]] = []
    open_index = None
    json_parts: dict[int, str] = {}
    for event in events[1:-1]:
        kind = event["type"]
        if kind == "content_block_start":
            assert open_index is None and event["index"] == len(blocks)
            blocks.append(dict(event["content_block"]))
            open_index = event["index"]
        elif kind == "content_block_delta":
            assert event["index"] == open_index
            block, delta = blocks[open_index], event["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            else:
                assert delta["type"] == "input_json_delta"
                json_parts[open_index] = json_parts.get(open_index, "") + delta["partial_json"]
        elif kind == "content_block_stop":
            assert event["index"] == open_index
            if open_index in json_parts:
                blocks[open_index]["input"] = json.loads(json_parts[open_index])
            open_index = None
        elif kind == "message_delta":
            assert open_index is None
            message = {**message, **event["delta"], "usage": event["usage"]}
        else:
            assert kind == "ping"
    assert events[-2]["type"] == "message_delta"
    return anthropic.types.Message.model_validate({**message, "content": blocks}).model_dump(
        exclude_none=True
    )


def test_a_text_and_tool_call_stream() -> None:
    events, complete = run(TOOL_STREAM)
    assert complete
    assert [(e["type"], e.get("index")) for e in events] == [
        ("message_start", None),
        ("ping", None),
        ("content_block_start", 0),
        *[("content_block_delta", 0)] * 3,
        ("content_block_stop", 0),
        ("content_block_start", 1),
        *[("content_block_delta", 1)] * 3,
        ("content_block_stop", 1),
        ("content_block_start", 2),
        *[("content_block_delta", 2)] * 2,
        ("content_block_stop", 2),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert events[0]["message"]["id"] == f"msg_{CHUNK_ID}"
    assert events[7]["content_block"] == {
        "type": "tool_use",
        "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
        "name": "get_weather",
        "input": {},
    }
    assert events[-2] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 54,
            "output_tokens": 41,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 128,
        },
    }
    message = reassemble(events)
    assert message["content"] == [
        {"type": "text", "text": "Let me check the weather."},
        {
            "type": "tool_use",
            "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
            "name": "get_weather",
            "input": {"location": "Paris, France"},
        },
        {
            "type": "tool_use",
            "id": "call_ABtqm8Kw1vF6HvW3TBR8vD9Q",
            "name": "get_weather",
            "input": {"location": "Oslo, Norway"},
        },
    ]
    assert message["stop_reason"] == "tool_use"


def test_reasoning_content_streams_as_a_thinking_block_before_the_text() -> None:
    data = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "The user greets me."}),
        chunk({"reasoning_content": " Greet back."}),
        chunk({"content": "Hi"}),
        chunk({"content": " there!"}),
        chunk(finish_reason="stop"),
        "[DONE]",
    ]
    events, complete = run(data)
    message = reassemble(events)
    assert complete
    assert message["content"] == [
        {"type": "thinking", "thinking": "The user greets me. Greet back.", "signature": ""},
        {"type": "text", "text": "Hi there!"},
    ]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["output_tokens"] == 0  # the server sent no usage chunk


def test_without_done_the_finish_reason_closes_the_message() -> None:
    data = [chunk({"role": "assistant", "content": "Hello"}), chunk(finish_reason="length")]
    events, complete = run(data, finish=False)
    assert not complete and [e["type"] for e in events][-1] == "content_block_delta"
    events, complete = run(data)
    assert complete
    assert [e["type"] for e in events][-4:] == [
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert reassemble(events)["stop_reason"] == "max_tokens"


def test_a_truncated_stream_is_left_for_the_caller_to_end() -> None:
    translator = messages_via_chat.StreamTranslator(CLIENT_MODEL)
    frames = translator.event("", chunk({"role": "assistant", "content": "Once upon"}))
    assert [e["type"] for e in decode(frames)] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
    ]
    assert translator.finish() == []
    assert not translator.complete


def test_an_error_chunk_becomes_an_error_event_that_ends_the_stream() -> None:
    translator = messages_via_chat.StreamTranslator(CLIENT_MODEL)
    translator.event("", chunk({"role": "assistant", "content": "Partial"}))
    error = {"error": {"message": "The server had an error.", "type": "server_error", "code": None}}
    events = decode(translator.event("", json.dumps(error)))
    assert events == [
        {"type": "error", "error": {"type": "api_error", "message": "The server had an error."}}
    ]
    assert translator.complete
    assert translator.event("", "[DONE]") == [] and translator.finish() == []


def test_a_named_error_event_with_plain_text_data() -> None:
    translator = messages_via_chat.StreamTranslator(CLIENT_MODEL)
    events = decode(translator.event("error", "upstream overloaded"))
    assert events == [
        {"type": "error", "error": {"type": "api_error", "message": "upstream overloaded"}}
    ]


def test_done_alone_still_yields_a_complete_empty_message() -> None:
    events, complete = run(["[DONE]"])
    assert complete
    assert [e["type"] for e in events] == ["message_start", "ping", "message_delta", "message_stop"]
    assert reassemble(events)["content"] == []


def test_usage_on_the_first_chunk_is_reported_in_message_start() -> None:
    first = json.loads(chunk({"role": "assistant", "content": "Hi"}))
    first["usage"] = {"prompt_tokens": 30, "completion_tokens": 1, "total_tokens": 31}
    events, _ = run([json.dumps(first), chunk(finish_reason="stop"), "[DONE]"])
    assert events[0]["message"]["usage"]["input_tokens"] == 30
