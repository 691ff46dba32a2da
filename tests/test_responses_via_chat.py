"""OpenAI Responses clients served by an OpenAI chat provider: requests, responses, streams.

What the translation reads and produces is checked against the official `openai` SDK's own
types: the Responses request params for what the client sends, the chat request params for
what the provider reads, and the Responses `Response` and stream event types (and the SDK's
own stream accumulator) for what the client reads back.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any, ClassVar

import openai
import pytest
from conftest import ServerThread, free_port
from openai.lib.streaming.responses import ResponseStreamState
from openai.types.chat import completion_create_params
from openai.types.responses import Response, ResponseStreamEvent, response_create_params
from pydantic import TypeAdapter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route

from turnout.apis import responses_via_chat
from turnout.apis.errors import RequestError

MODEL = "qwen2.5-72b-instruct"
CLIENT_MODEL = "gpt-4.1"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"location": {"type": "string", "description": "City and country"}},
    "required": ["location"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "parameters": WEATHER_SCHEMA,
    "strict": True,
}
WEATHER_FUNCTION = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": WEATHER_SCHEMA,
        "strict": True,
    },
}

_RESPONSES_REQUEST = TypeAdapter(response_create_params.ResponseCreateParamsNonStreaming)
_RESPONSES_STREAM_REQUEST = TypeAdapter(response_create_params.ResponseCreateParamsStreaming)
_CHAT_REQUEST = TypeAdapter(completion_create_params.CompletionCreateParamsNonStreaming)
_CHAT_STREAM_REQUEST = TypeAdapter(completion_create_params.CompletionCreateParamsStreaming)
_STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


def responses_body(**fields: Any) -> dict[str, Any]:
    """A Responses request as a client sends it, with `fields` added or replaced."""
    return {"model": CLIENT_MODEL, "input": "Hello", **fields}


def _materialize(value: Any) -> Any:
    """Run pydantic's lazy validators of `Iterable` fields (the openai params use them)."""
    if isinstance(value, dict):
        return {key: _materialize(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, Iterator)):
        return [_materialize(item) for item in value]
    return value


def _validate(body: dict[str, Any], streaming: TypeAdapter[Any], plain: TypeAdapter[Any]) -> None:
    _materialize((streaming if body.get("stream") else plain).validate_python(body))


def translate(body: dict[str, Any]) -> dict[str, Any]:
    """The chat request for `body`, after checking the SDK accepts both."""
    _validate(body, _RESPONSES_STREAM_REQUEST, _RESPONSES_REQUEST)
    chat = responses_via_chat.request(body, MODEL)
    _validate(chat, _CHAT_STREAM_REQUEST, _CHAT_REQUEST)
    return chat


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "turnout.translate"]


# --- request: the conversation ------------------------------------------------------------


def test_instructions_and_string_input_and_the_providers_model() -> None:
    chat = translate(
        responses_body(instructions="You are a terse assistant.", max_output_tokens=1024)
    )
    assert chat == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Hello"},
        ],
        "max_tokens": 1024,
    }


def test_message_items_with_roles_text_parts_and_images() -> None:
    items = [
        {"role": "developer", "content": "Answer in English."},
        {
            "type": "message",
            "role": "system",
            "content": [{"type": "input_text", "text": "Be brief."}],
        },
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is in these images?"},
                {
                    "type": "input_image",
                    "image_url": "https://example.com/cat.jpg",
                    "detail": "low",
                },
                {
                    "type": "input_image",
                    "image_url": f"data:image/png;base64,{PNG}",
                    "detail": "auto",
                },
            ],
        },
        {
            "type": "message",
            "id": "msg_67ccd3acc8d48190a77525dc6de64b4104becb25c26ab4ad",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "A cat and a pixel.", "annotations": []}],
        },
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "<context>Two images.</context>"},
                {"type": "input_text", "text": "Which is bigger?"},
            ],
        },
    ]
    chat = translate(responses_body(input=items))
    assert chat["messages"] == [
        {"role": "system", "content": "Answer in English."},
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these images?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"},
                },
                {
                    "type": "image_url",
                    "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "auto"},
                },
            ],
        },
        {"role": "assistant", "content": "A cat and a pixel."},
        {"role": "user", "content": "<context>Two images.</context>\nWhich is bigger?"},
    ]


def test_a_function_call_round_trip_becomes_tool_calls_then_tool_messages() -> None:
    items = [
        {"role": "user", "content": "What's the weather in Paris and in Oslo?"},
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "I'll check both.", "annotations": []}],
        },
        {
            "type": "function_call",
            "id": "fc_12345xyz",
            "call_id": "call_12345xyz",
            "name": "get_weather",
            "arguments": '{"location":"Paris, France"}',
            "status": "completed",
        },
        {
            "type": "function_call",
            "call_id": "call_67890abc",
            "name": "get_weather",
            "arguments": '{"location":"Oslo, Norway"}',
        },
        {"type": "function_call_output", "call_id": "call_12345xyz", "output": "15°C, light rain"},
        {
            "type": "function_call_output",
            "call_id": "call_67890abc",
            "output": [{"type": "input_text", "text": "-2°C, snow"}],
        },
        {"role": "user", "content": "Use Celsius please."},
    ]
    chat = translate(responses_body(input=items, tools=[WEATHER_TOOL]))
    assert chat["messages"] == [
        {"role": "user", "content": "What's the weather in Paris and in Oslo?"},
        {
            "role": "assistant",
            "content": "I'll check both.",
            "tool_calls": [
                {
                    "id": "call_12345xyz",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"location":"Paris, France"}',
                    },
                },
                {
                    "id": "call_67890abc",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Oslo, Norway"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_12345xyz", "content": "15°C, light rain"},
        {"role": "tool", "tool_call_id": "call_67890abc", "content": "-2°C, snow"},
        {"role": "user", "content": "Use Celsius please."},
    ]
    assert chat["tools"] == [WEATHER_FUNCTION]


def test_calls_without_text_and_images_from_tools_follow_the_last_tool_message() -> None:
    shot = {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "high"}
    items = [
        {"role": "user", "content": "Take two screenshots"},
        {"type": "function_call", "call_id": "call_a", "name": "screenshot", "arguments": "{}"},
        {"type": "function_call", "call_id": "call_b", "name": "screenshot", "arguments": "{}"},
        {
            "type": "function_call_output",
            "call_id": "call_a",
            "output": [{"type": "input_text", "text": "taken"}, shot],
        },
        {"type": "function_call_output", "call_id": "call_b", "output": "failed"},
    ]
    chat = translate(responses_body(input=items))
    assistant, first, second, images = chat["messages"][1:]
    assert assistant["content"] is None
    assert [call["id"] for call in assistant["tool_calls"]] == ["call_a", "call_b"]
    assert first == {"role": "tool", "tool_call_id": "call_a", "content": "taken"}
    assert second == {"role": "tool", "tool_call_id": "call_b", "content": "failed"}
    assert images == {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": shot["image_url"], "detail": "high"}}
        ],
    }


def test_files_become_chat_file_parts() -> None:
    memo = {
        "type": "input_file",
        "filename": "memo.pdf",
        "file_data": "data:application/pdf;base64,JVBERi0x",
    }
    stored = {"type": "input_file", "file_id": "file-6F2ksmvXxt4VdoqmHRw6kL"}
    chat = translate(responses_body(input=[{"role": "user", "content": [memo, stored]}]))
    assert chat["messages"][0]["content"] == [
        {"type": "file", "file": {"file_data": memo["file_data"], "filename": "memo.pdf"}},
        {"type": "file", "file": {"file_id": stored["file_id"]}},
    ]


# --- request: parameters -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        (
            {"type": "function", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_tool_choice(tool_choice: Any, expected: Any) -> None:
    chat = translate(responses_body(tools=[WEATHER_TOOL], tool_choice=tool_choice))
    assert chat["tool_choice"] == expected


def test_tools_pass_strict_only_when_set_and_parallel_tool_calls() -> None:
    loose = {"type": "function", "name": "lookup", "parameters": None, "strict": None}
    chat = translate(responses_body(tools=[WEATHER_TOOL, loose], parallel_tool_calls=False))
    assert chat["tools"] == [
        WEATHER_FUNCTION,
        {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
    ]
    assert chat["parallel_tool_calls"] is False
    assert "parallel_tool_calls" not in translate(responses_body(parallel_tool_calls=True))


def test_sampling_user_and_cache_key_pass_through() -> None:
    chat = translate(
        responses_body(temperature=0.2, top_p=0.9, user="user-8c1f", prompt_cache_key="session-42")
    )
    assert (chat["temperature"], chat["top_p"], chat["user"]) == (0.2, 0.9, "user-8c1f")
    assert chat["prompt_cache_key"] == "session-42"
    assert "stream" not in chat and "stream_options" not in chat


def test_json_schema_format_becomes_response_format() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "date": {"type": "string"}},
        "required": ["name", "date"],
        "additionalProperties": False,
    }
    text = {
        "format": {
            "type": "json_schema",
            "name": "calendar_event",
            "schema": schema,
            "strict": True,
        },
        "verbosity": "low",
    }
    chat = translate(responses_body(text=text))
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "calendar_event", "schema": schema, "strict": True},
    }
    assert chat["verbosity"] == "low"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ({"format": {"type": "json_object"}}, {"type": "json_object"}),
        ({"format": {"type": "text"}}, None),
    ],
)
def test_other_text_formats(text: dict[str, Any], expected: Any) -> None:
    assert translate(responses_body(text=text)).get("response_format") == expected


def test_reasoning_effort_becomes_reasoning_effort() -> None:
    chat = translate(responses_body(reasoning={"effort": "low"}))
    assert chat["reasoning_effort"] == "low"


def test_stream_asks_for_the_usage_chunk() -> None:
    chat = translate(responses_body(stream=True))
    assert chat["stream"] is True
    assert chat["stream_options"] == {"include_usage": True}


def test_what_chat_cannot_express_is_dropped_and_logged_once_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    items = [
        {
            "role": "user",
            "content": [{"type": "input_image", "file_id": "file-abc", "detail": "auto"}],
        },
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Hm."}]},
        {"type": "item_reference", "id": "msg_earlier"},
        {"role": "user", "content": "Search the news."},
        {"type": "reasoning", "id": "rs_2", "summary": []},  # dropped again, logged once
    ]
    body = responses_body(
        input=items,
        store=True,
        previous_response_id="resp_68af4030592c81938ec0a5fbab4a3e9f05438e46b5f69a3b",
        include=["reasoning.encrypted_content"],
        reasoning={"effort": "medium", "summary": "auto"},
        tools=[WEATHER_TOOL, {"type": "web_search"}],
        metadata={"session": "42"},
        truncation="auto",
    )
    with caplog.at_level(logging.WARNING, logger="turnout.translate"):
        chat = translate(body)
    assert set(chat) == {"model", "messages", "tools", "reasoning_effort"}
    assert chat["messages"] == [{"role": "user", "content": "Search the news."}]
    warnings = warnings_of(caplog)
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    for name in (
        "`store`",
        "`previous_response_id`",
        "`include`",
        "`reasoning.summary`",
        "`web_search`",
        "`metadata`",
        "`truncation`",
        "`reasoning` input items",
        "`item_reference` input items",
        "`input_image` parts without an `image_url`",
    ):
        assert any(name in message for message in warnings), name
    assert len(warnings) == len(set(warnings))


def test_nothing_is_logged_when_nothing_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    body = responses_body(
        instructions="You are a coding agent.",
        tools=[WEATHER_TOOL],
        tool_choice="auto",
        parallel_tool_calls=True,
        store=False,
        include=[],
        truncation="disabled",
        text={"format": {"type": "text"}},
        reasoning={"effort": "high", "summary": None},
        stream=True,
    )
    with caplog.at_level(logging.DEBUG, logger="turnout.translate"):
        translate(body)
    assert caplog.records == []


def test_tool_choice_without_function_tools_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    body = responses_body(tools=[{"type": "web_search"}], tool_choice="required")
    with caplog.at_level(logging.WARNING, logger="turnout.translate"):
        chat = translate(body)
    assert "tools" not in chat and "tool_choice" not in chat
    assert any("`tool_choice`" in message for message in warnings_of(caplog))


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": None}, "input"),
        ({"input": [{"role": "critic", "content": "Hi"}]}, "input[0].role"),
        (
            {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
        ),
        ({"input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].output"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_text"}]}]},
            "input[0].content[0].text",
        ),
        ({"instructions": ["Be brief."]}, "instructions"),
        ({"tool_choice": "any", "tools": [WEATHER_TOOL]}, "tool_choice"),
        ({"text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
        ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ],
)
def test_malformed_requests_are_refused_with_their_path(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(RequestError) as caught:
        responses_via_chat.request(responses_body(**fields), MODEL)
    assert caught.value.param == param
    assert caught.value.status == 400


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


def translate_response(body: dict[str, Any]) -> tuple[dict[str, Any], Response]:
    """The Responses object for `body`, and the SDK's reading of it."""
    translated = responses_via_chat.response(body, CLIENT_MODEL)
    return translated, Response.model_validate(translated)


def test_a_text_answer() -> None:
    translated, parsed = translate_response(chat_completion({"content": "Hello! How can I help?"}))
    item_id = translated["output"][0]["id"]
    assert re.fullmatch(r"msg_[0-9a-f]{32}", item_id)
    assert translated == {
        "id": "resp_chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "response",
        "created_at": 1741569952,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "model": CLIENT_MODEL,
        "output": [
            {
                "id": item_id,
                "type": "message",
                "role": "assistant",
                "content": [
                    {
                        "type": "output_text",
                        "text": "Hello! How can I help?",
                        "annotations": [],
                        "logprobs": [],
                    }
                ],
                "status": "completed",
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 19,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 10,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 29,
        },
    }
    assert parsed.output_text == "Hello! How can I help?"


def test_tool_calls_become_function_call_items() -> None:
    calls = [
        {
            "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location": "Paris, France"}'},
        },
        {
            "id": "call_ABtqm8Kw1vF6HvW3TBR8vD9Q",
            "type": "function",
            "function": {"name": "now", "arguments": ""},
        },
    ]
    body = chat_completion({"content": "Checking.", "tool_calls": calls}, "tool_calls")
    translated, parsed = translate_response(body)
    assert translated["status"] == "completed"
    message, first, second = translated["output"]
    assert message["type"] == "message" and parsed.output_text == "Checking."
    assert re.fullmatch(r"fc_[0-9a-f]{32}", first["id"]) and first["id"] != second["id"]
    assert {key: first[key] for key in first if key != "id"} == {
        "type": "function_call",
        "call_id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
        "name": "get_weather",
        "arguments": '{"location": "Paris, France"}',
        "status": "completed",
    }
    assert (second["call_id"], second["name"], second["arguments"]) == (
        "call_ABtqm8Kw1vF6HvW3TBR8vD9Q",
        "now",
        "{}",  # clients parse the arguments as JSON; an empty string is not
    )


@pytest.mark.parametrize(
    ("finish_reason", "reason"),
    [("length", "max_output_tokens"), ("content_filter", "content_filter")],
)
def test_a_cut_short_answer_is_incomplete(finish_reason: str, reason: str) -> None:
    translated, parsed = translate_response(
        chat_completion({"content": "Once upon"}, finish_reason)
    )
    assert translated["status"] == "incomplete"
    assert translated["incomplete_details"] == {"reason": reason}
    assert translated["output"][-1]["status"] == "incomplete"
    assert parsed.output_text == "Once upon"


def test_reasoning_content_leads_as_a_reasoning_item_and_a_refusal_is_a_refusal_part() -> None:
    body = chat_completion(
        {"content": None, "refusal": "I can't help with that.", "reasoning_content": "Unsafe."}
    )
    translated, _ = translate_response(body)
    reasoning, message = translated["output"]
    assert reasoning["type"] == "reasoning" and re.fullmatch(r"rs_[0-9a-f]{32}", reasoning["id"])
    assert reasoning["summary"] == []
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "Unsafe."}]
    assert message["content"] == [{"type": "refusal", "refusal": "I can't help with that."}]


def test_cached_and_reasoning_tokens() -> None:
    usage = {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0},
    }
    translated, parsed = translate_response(chat_completion({"content": "Done."}, usage=usage))
    assert translated["usage"] == {
        "input_tokens": 2006,  # Responses, like chat, counts cached tokens inside input_tokens
        "input_tokens_details": {"cached_tokens": 1920, "cache_write_tokens": 0},
        "output_tokens": 300,
        "output_tokens_details": {"reasoning_tokens": 256},
        "total_tokens": 2306,
    }
    assert parsed.usage is not None and parsed.usage.input_tokens_details.cached_tokens == 1920


def test_usage_without_details_or_at_all() -> None:
    body = chat_completion({"content": "Hi"})
    body["usage"] = {"prompt_tokens": 12, "completion_tokens": 3}
    translated, _ = translate_response(body)
    assert translated["usage"]["total_tokens"] == 15
    del body["usage"]
    assert translate_response(body)[0]["usage"] is None


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


USAGE = {
    "prompt_tokens": 182,
    "completion_tokens": 41,
    "total_tokens": 223,
    "prompt_tokens_details": {"cached_tokens": 128, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
USAGE_CHUNK = json.dumps(
    {
        "id": CHUNK_ID,
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": "gpt-4o-2024-08-06",
        "choices": [],
        "usage": USAGE,
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
        _STREAM_EVENT.validate_python(event)
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def run(data: list[str], *, finish: bool = True) -> tuple[list[dict[str, Any]], bool]:
    """Feed the events through one translator; the client's events and whether it completed."""
    translator = responses_via_chat.StreamTranslator(CLIENT_MODEL)
    frames = [frame for item in data for frame in translator.event("", item)]
    if finish:
        frames += translator.finish()
    return decode(frames), translator.complete


def accumulate(events: list[dict[str, Any]]) -> Any:
    """The final response the openai SDK's own stream accumulator builds from the events."""
    state = ResponseStreamState(input_tools=openai.omit, text_format=openai.omit)
    final = None
    for event in events:
        for handled in state.handle_event(_STREAM_EVENT.validate_python(event)):
            final = getattr(handled, "response", final)
    return final


def test_a_text_and_tool_call_stream() -> None:
    events, complete = run(TOOL_STREAM)
    assert complete
    assert [(e["type"], e.get("output_index"), e.get("content_index")) for e in events] == [
        ("response.created", None, None),
        ("response.in_progress", None, None),
        ("response.output_item.added", 0, None),
        ("response.content_part.added", 0, 0),
        *[("response.output_text.delta", 0, 0)] * 3,
        ("response.output_text.done", 0, 0),
        ("response.content_part.done", 0, 0),
        ("response.output_item.done", 0, None),
        ("response.output_item.added", 1, None),
        *[("response.function_call_arguments.delta", 1, None)] * 3,
        ("response.function_call_arguments.done", 1, None),
        ("response.output_item.done", 1, None),
        ("response.output_item.added", 2, None),
        *[("response.function_call_arguments.delta", 2, None)] * 2,
        ("response.function_call_arguments.done", 2, None),
        ("response.output_item.done", 2, None),
        ("response.completed", None, None),
    ]
    created = events[0]["response"]
    assert created["id"] == f"resp_{CHUNK_ID}" and created["model"] == CLIENT_MODEL
    assert (created["status"], created["output"], created["usage"]) == ("in_progress", [], None)

    message_id = events[2]["item"]["id"]
    assert events[2]["item"] == {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "content": [],
        "status": "in_progress",
    }
    assert all(e["item_id"] == message_id for e in events[3:8])
    deltas = "".join(e["delta"] for e in events[4:7])
    assert deltas == events[7]["text"] == "Let me check the weather."
    assert events[8]["part"] == {
        "type": "output_text",
        "text": "Let me check the weather.",
        "annotations": [],
        "logprobs": [],
    }
    assert events[9]["item"]["status"] == "completed"

    for added, done, city in ((10, 15, "Paris, France"), (16, 20, "Oslo, Norway")):
        call = events[added]["item"]
        assert (call["type"], call["name"], call["arguments"], call["status"]) == (
            "function_call",
            "get_weather",
            "",
            "in_progress",
        )
        pieces = events[added + 1 : done - 1]
        assert all(e["item_id"] == call["id"] for e in [*pieces, events[done - 1]])
        arguments = "".join(e["delta"] for e in pieces)
        assert arguments == events[done - 1]["arguments"] == events[done]["item"]["arguments"]
        assert json.loads(arguments) == {"location": city}
        assert events[done]["item"]["status"] == "completed"
    assert [events[i]["item"]["call_id"] for i in (10, 16)] == [
        "call_DdmO9pD3xa9XTPNJ32zg2hcA",
        "call_ABtqm8Kw1vF6HvW3TBR8vD9Q",
    ]

    completed = events[-1]["response"]
    assert completed["status"] == "completed" and completed["incomplete_details"] is None
    assert completed["usage"] == {
        "input_tokens": 182,
        "input_tokens_details": {"cached_tokens": 128, "cache_write_tokens": 0},
        "output_tokens": 41,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 223,
    }
    assert completed["output"] == [events[i]["item"] for i in (9, 15, 20)]
    final = accumulate(events)
    assert final.output_text == "Let me check the weather."
    assert [item.type for item in final.output] == ["message", "function_call", "function_call"]


def test_reasoning_streams_as_a_reasoning_item_before_the_message() -> None:
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
    assert complete
    assert [e["type"] for e in events][2:10] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
    ]
    assert events[3]["part"] == {"type": "reasoning_text", "text": ""}
    assert events[6]["text"] == "The user greets me. Greet back."
    reasoning, message = events[-1]["response"]["output"]
    assert reasoning["content"] == [
        {"type": "reasoning_text", "text": "The user greets me. Greet back."}
    ]
    assert message["content"][0]["text"] == "Hi there!"
    assert events[-1]["response"]["usage"] is None  # the server sent no usage chunk
    assert accumulate(events).output_text == "Hi there!"


def test_a_refusal_streams_as_a_refusal_part() -> None:
    data = [
        chunk({"refusal": "I can't"}),
        chunk({"refusal": " help."}),
        chunk(finish_reason="stop"),
    ]
    events, _ = run([*data, "[DONE]"])
    assert [e["type"] for e in events][3:7] == [
        "response.content_part.added",
        "response.refusal.delta",
        "response.refusal.delta",
        "response.refusal.done",
    ]
    assert events[6]["refusal"] == "I can't help."
    assert events[-1]["response"]["output"][0]["content"] == [
        {"type": "refusal", "refusal": "I can't help."}
    ]


def test_a_call_streamed_without_arguments_gets_an_empty_object() -> None:
    data = [tool_piece(0, "", "call_now", "now"), chunk(finish_reason="tool_calls"), "[DONE]"]
    events, _ = run(data)
    assert [e["type"] for e in events][3:5] == [
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
    ]
    assert events[3]["delta"] == events[4]["arguments"] == "{}"


def test_without_done_the_finish_reason_closes_the_response_and_length_is_incomplete() -> None:
    data = [chunk({"role": "assistant", "content": "Once upon"}), chunk(finish_reason="length")]
    events, complete = run(data, finish=False)
    assert not complete and events[-1]["type"] == "response.output_text.delta"
    events, complete = run(data)
    assert complete
    assert [e["type"] for e in events][-5:] == [
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    assert events[-2]["item"]["status"] == "incomplete"
    incomplete = events[-1]["response"]
    assert incomplete["status"] == "incomplete"
    assert incomplete["incomplete_details"] == {"reason": "max_output_tokens"}


def test_a_truncated_stream_is_left_for_the_caller_to_end() -> None:
    translator = responses_via_chat.StreamTranslator(CLIENT_MODEL)
    frames = translator.event("", chunk({"role": "assistant", "content": "Once upon"}))
    assert [e["type"] for e in decode(frames)] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert translator.finish() == []
    assert not translator.complete


def test_an_error_chunk_becomes_response_failed_that_ends_the_stream() -> None:
    translator = responses_via_chat.StreamTranslator(CLIENT_MODEL)
    started = translator.event("", chunk({"role": "assistant", "content": "Partial"}))
    error = {"error": {"message": "The server had an error.", "type": "server_error", "code": None}}
    events = decode([*started, *translator.event("", json.dumps(error))])
    failed = events[-1]
    assert failed["type"] == "response.failed" and failed["sequence_number"] == len(started)
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {
        "code": "server_error",
        "message": "The server had an error.",
    }
    assert translator.complete
    assert translator.event("", "[DONE]") == [] and translator.finish() == []


def test_a_named_error_event_first_still_starts_the_response() -> None:
    translator = responses_via_chat.StreamTranslator(CLIENT_MODEL)
    rate_limited = {"error": {"message": "Slow down.", "type": "rate_limit_exceeded", "code": None}}
    events = decode(translator.event("error", json.dumps(rate_limited)))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    assert events[-1]["response"]["error"] == {
        "code": "rate_limit_exceeded",
        "message": "Slow down.",
    }
    plain = responses_via_chat.StreamTranslator(CLIENT_MODEL)
    failed = decode(plain.event("error", "upstream overloaded"))[-1]
    assert failed["response"]["error"]["message"] == "upstream overloaded"


def test_done_alone_still_yields_a_complete_empty_response() -> None:
    events, complete = run(["[DONE]"])
    assert complete
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.completed",
    ]
    assert events[-1]["response"]["output"] == []
    assert accumulate(events).output == []


# --- the official OpenAI client reading translated answers ------------------------------------


class Gateway:
    """What the stand-in gateway answers next (the translated bytes under test), and the chat
    requests it translated from what the client sent."""

    body = b""
    media_type = "application/json"
    requests: ClassVar[list[dict[str, Any]]] = []


@pytest.fixture(scope="module")
def client() -> Iterator[openai.OpenAI]:
    """An OpenAI client whose gateway translates every Responses request and answers `Gateway`."""

    async def responses(request: Request) -> StarletteResponse:
        Gateway.requests.append(responses_via_chat.request(await request.json(), MODEL))
        return StarletteResponse(Gateway.body, media_type=Gateway.media_type)

    app = Starlette(routes=[Route("/v1/responses", responses, methods=["POST"])])
    with ServerThread(app, free_port()) as server:
        yield openai.OpenAI(api_key="test", base_url=f"{server.url}/v1", max_retries=0)


def test_openai_client_reads_the_translated_stream(client: openai.OpenAI) -> None:
    translator = responses_via_chat.StreamTranslator(CLIENT_MODEL)
    frames = [frame for item in TOOL_STREAM for frame in translator.event("", item)]
    Gateway.body, Gateway.media_type = b"".join(frames), "text/event-stream"
    tools: Any = [WEATHER_TOOL]
    with client.responses.stream(model=CLIENT_MODEL, input="Weather?", tools=tools) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert Gateway.requests[-1]["stream"] is True
    assert Gateway.requests[-1]["tools"] == [WEATHER_FUNCTION]
    assert text == final.output_text == "Let me check the weather."
    calls = [item for item in final.output if item.type == "function_call"]
    assert [json.loads(call.arguments) for call in calls] == [
        {"location": "Paris, France"},
        {"location": "Oslo, Norway"},
    ]
    assert final.usage is not None and final.usage.total_tokens == 223


def test_openai_client_reads_the_translated_response(client: openai.OpenAI) -> None:
    translated = responses_via_chat.response(
        chat_completion({"content": "Bonjour !"}), CLIENT_MODEL
    )
    Gateway.body, Gateway.media_type = json.dumps(translated).encode(), "application/json"
    answer = client.responses.create(
        model=CLIENT_MODEL, instructions="Answer in French.", input="Hello", max_output_tokens=64
    )
    assert Gateway.requests[-1]["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert Gateway.requests[-1]["max_tokens"] == 64
    assert answer.output_text == "Bonjour !" and answer.status == "completed"
