"""OpenAI Chat Completions clients served by an Anthropic Messages provider.

Translated bodies are checked against the official SDKs' own types: `anthropic`'s
MessageCreateParams for requests, `openai`'s ChatCompletion and ChatCompletionChunk for
answers, and the `openai` client itself reading a translated stream.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import openai
import pydantic
import pytest
from anthropic.types.message_create_params import (
    MessageCreateParamsBase,
    MessageCreateParamsStreaming,
)
from conftest import ServerThread, free_port
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionUserMessageParam
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from turnout.apis.chat_via_messages import DEFAULT_MAX_TOKENS, StreamTranslator, request, response

MODEL = "claude-sonnet-4-20250514"
QUESTION = "What's the weather in Paris?"
USER: ChatCompletionUserMessageParam = {"role": "user", "content": QUESTION}
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
_ANTHROPIC_PARAMS = pydantic.TypeAdapter(MessageCreateParamsStreaming)


def _drain(value: object) -> object:
    """Pydantic validates an Iterable field lazily: consuming it is what validates its items."""
    if isinstance(value, dict):
        return {key: _drain(item) for key, item in value.items()}
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return [_drain(item) for item in value]
    return value


def anthropic_request(body: dict[str, Any]) -> dict[str, Any]:
    """Translate `body`, and check the result is a request the Messages API accepts."""
    out = request(body, MODEL)
    # The SDK's newest types drop the sampling fields (the newest models refuse them), but the
    # anthropic-version turnout sends, 2023-06-01, still takes them: check everything else.
    sampling = {"temperature", "top_p", "top_k"}
    assert set(out) - sampling <= MessageCreateParamsBase.__optional_keys__ | {"stream", "model"}
    params = {key: value for key, value in out.items() if key not in sampling}
    # The Streaming variant only because its `stream` is required: it checks all the rest.
    _drain(_ANTHROPIC_PARAMS.validate_python({**params, "stream": True}))
    assert out["model"] == MODEL
    assert isinstance(out["max_tokens"], int) and out["max_tokens"] > 0
    roles = [message["role"] for message in out["messages"]]
    assert roles[0] == "user"
    assert all(a != b for a, b in itertools.pairwise(roles)), roles
    for message in out["messages"]:
        assert message["content"], message
        kinds = [block["type"] for block in message["content"]]
        assert kinds == sorted(kinds, key=lambda kind: kind != "tool_result"), kinds
    return out


def text(value: str) -> dict[str, str]:
    return {"type": "text", "text": value}


def dropped(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The parameter each `turnout.translate` warning names, in order."""
    return [
        record.getMessage().split("`")[1]
        for record in caplog.records
        if record.name == "turnout.translate" and record.levelno == logging.WARNING
    ]


# --- request --------------------------------------------------------------------------------


def test_system_and_developer_messages_become_the_system_prompt() -> None:
    out = anthropic_request(
        {
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "You are a terse assistant."},
                {"role": "developer", "content": [text("Answer in French."), text("No lists.")]},
                USER,
                {"role": "system", "content": "Prefer metric units."},
            ],
        }
    )
    assert out["system"] == (
        "You are a terse assistant.\n\nAnswer in French.\n\nNo lists.\n\nPrefer metric units."
    )
    assert out["messages"] == [{"role": "user", "content": [text(QUESTION)]}]


def test_no_system_messages_means_no_system_field() -> None:
    assert "system" not in anthropic_request({"messages": [USER]})


def test_text_and_images_by_url_and_base64() -> None:
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    out = anthropic_request(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        text("Compare these two charts."),
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://example.com/q1.png", "detail": "high"},
                        },
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                        text(""),
                    ],
                }
            ]
        }
    )
    assert out["messages"][0]["content"] == [
        text("Compare these two charts."),
        {"type": "image", "source": {"type": "url", "url": "https://example.com/q1.png"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
    ]


def test_tool_round_trip() -> None:
    out = anthropic_request(
        {
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "content": "Checking both cities.",
                    "tool_calls": [
                        {
                            "id": "call_paris",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        },
                        {
                            "id": "call_lyon",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": "{city: Lyon"},
                        },
                        {
                            "id": "call_time",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": ""},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_paris", "content": "18C, sunny"},
                {"role": "tool", "tool_call_id": "call_lyon", "content": [text("21C, cloudy")]},
                {"role": "tool", "tool_call_id": "call_time", "content": ""},
                {"role": "user", "content": "Which is warmer?"},
            ],
            "tools": [WEATHER_TOOL],
        }
    )
    assert out["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                text("Checking both cities."),
                {
                    "type": "tool_use",
                    "id": "call_paris",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "call_lyon",
                    "name": "get_weather",
                    "input": {"_raw": "{city: Lyon"},
                },
                {"type": "tool_use", "id": "call_time", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_paris", "content": "18C, sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_lyon",
                    "content": [text("21C, cloudy")],
                },
                {"type": "tool_result", "tool_use_id": "call_time"},
                text("Which is warmer?"),
            ],
        },
    ]


def test_assistant_turn_of_only_tool_calls_has_only_tool_use() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}
    out = anthropic_request(
        {
            "messages": [
                USER,
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            ]
        }
    )
    assert out["messages"][1]["content"] == [
        {"type": "tool_use", "id": "c1", "name": "f", "input": {"_raw": "[1, 2]"}}
    ]


def test_consecutive_turns_of_one_role_merge() -> None:
    out = anthropic_request(
        {
            "messages": [
                {"role": "user", "content": "Here is my draft."},
                {"role": "user", "content": [text("Please proofread it.")]},
                {"role": "assistant", "content": "Sure."},
                {"role": "assistant", "content": [text("Send it over.")]},
                {"role": "user", "content": "Done."},
            ]
        }
    )
    assert out["messages"] == [
        {"role": "user", "content": [text("Here is my draft."), text("Please proofread it.")]},
        {"role": "assistant", "content": [text("Sure."), text("Send it over.")]},
        {"role": "user", "content": [text("Done.")]},
    ]


def test_conversation_opening_with_the_assistant_gets_a_user_turn_first() -> None:
    out = anthropic_request(
        {
            "messages": [
                {"role": "system", "content": "You are a pirate."},
                {"role": "assistant", "content": "Ahoy! What be yer question?"},
                {"role": "user", "content": ""},
                {"role": "user", "content": "Where is the treasure?"},
            ]
        }
    )
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][1]["content"] == [text("Ahoy! What be yer question?")]
    assert out["messages"][2]["content"] == [text("Where is the treasure?")]


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        ("END", ["END"]),
        (["\n\nHuman:", "###"], ["\n\nHuman:", "###"]),
        (None, None),
        ([], None),
    ],
)
def test_stop_becomes_stop_sequences(stop: object, expected: list[str] | None) -> None:
    out = anthropic_request({"messages": [USER], "stop": stop})
    assert out.get("stop_sequences") == expected


def test_whitespace_only_stop_sequences_are_dropped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = anthropic_request({"messages": [USER], "stop": ["\n", "END", " "]})
    assert out["stop_sequences"] == ["END"]
    assert dropped(caplog) == ["stop"]


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"max_completion_tokens": 300}, 300),
        ({"max_tokens": 200}, 200),
        ({"max_completion_tokens": 300, "max_tokens": 200}, 300),
        ({"max_completion_tokens": None, "max_tokens": 200}, 200),
        ({}, DEFAULT_MAX_TOKENS),
    ],
)
def test_max_tokens(limits: dict[str, int | None], expected: int) -> None:
    assert anthropic_request({"messages": [USER], **limits})["max_tokens"] == expected


def test_tools_become_input_schemas() -> None:
    no_arguments = {"type": "function", "function": {"name": "get_time"}}
    out = anthropic_request({"messages": [USER], "tools": [WEATHER_TOOL, no_arguments]})
    assert out["tools"] == [
        {
            "name": "get_weather",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
            "description": "Current weather for a city.",
        },
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, None),
        ({"tool_choice": "auto"}, {"type": "auto"}),
        ({"tool_choice": "none"}, {"type": "none"}),
        ({"tool_choice": "required"}, {"type": "any"}),
        (
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
            {"type": "tool", "name": "get_weather"},
        ),
        ({"parallel_tool_calls": True}, None),
        ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        (
            {"tool_choice": "required", "parallel_tool_calls": False},
            {"type": "any", "disable_parallel_tool_use": True},
        ),
        ({"tool_choice": "none", "parallel_tool_calls": False}, {"type": "none"}),
    ],
)
def test_tool_choice(fields: dict[str, Any], expected: dict[str, Any] | None) -> None:
    out = anthropic_request({"messages": [USER], "tools": [WEATHER_TOOL], **fields})
    assert out.get("tool_choice") == expected


def test_tool_choice_without_tools_is_not_sent() -> None:
    out = anthropic_request({"messages": [USER], "tool_choice": "none"})
    assert "tools" not in out and "tool_choice" not in out


def test_parameters_anthropic_cannot_express_are_dropped_and_each_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = {
        "model": "gpt-4o",
        "messages": [
            USER,
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AA"}}]},
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "BB"}}]},
        ],
        "n": 3,
        "logit_bias": {"50256": -100},
        "presence_penalty": 0.5,
        "frequency_penalty": 0.2,
        "seed": 7,
        "response_format": {"type": "json_object"},
        "logprobs": True,
        "top_logprobs": 2,
        "service_tier": "flex",
        "x_custom_field": "anything",
    }
    with caplog.at_level(logging.WARNING, logger="turnout.translate"):
        out = anthropic_request(body)
    names = dropped(caplog)
    assert sorted(names) == sorted(
        [
            "messages[].content[type=input_audio]",
            "n",
            "logit_bias",
            "presence_penalty",
            "frequency_penalty",
            "seed",
            "response_format",
            "logprobs",
            "top_logprobs",
            "service_tier",
            "x_custom_field",
        ]
    )
    assert not set(body) & set(out) - {"model", "messages"}
    assert out["messages"] == [{"role": "user", "content": [text(QUESTION)]}]


def test_values_that_ask_for_nothing_are_dropped_silently(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = {
        "model": "router",
        "messages": [USER],
        "n": 1,
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
        "logit_bias": {},
        "logprobs": False,
        "response_format": {"type": "text"},
        "seed": None,
        "stream": True,
        "stream_options": {"include_usage": True},
        "routing_preferences": [{"name": "code", "description": "writing code"}],
    }
    with caplog.at_level(logging.WARNING, logger="turnout.translate"):
        out = anthropic_request(body)
    assert dropped(caplog) == []
    assert out == {
        "model": MODEL,
        "messages": [{"role": "user", "content": [text(QUESTION)]}],
        "max_tokens": DEFAULT_MAX_TOKENS,
        "stream": True,
    }


def test_user_becomes_metadata_user_id_and_stream_is_kept() -> None:
    out = anthropic_request({"messages": [USER], "user": "user-1234", "stream": False})
    assert out["metadata"] == {"user_id": "user-1234"}
    assert out["stream"] is False


def test_sampling_parameters(caplog: pytest.LogCaptureFixture) -> None:
    out = anthropic_request({"messages": [USER], "temperature": 0.2, "top_k": 40})
    assert (out["temperature"], out["top_k"]) == (0.2, 40)
    assert anthropic_request({"messages": [USER], "top_p": 0.9})["top_p"] == 0.9
    with caplog.at_level(logging.WARNING, logger="turnout.translate"):
        out = anthropic_request({"messages": [USER], "temperature": 1.6, "top_p": 0.9})
    assert out["temperature"] == 1.0 and "top_p" not in out
    assert dropped(caplog) == ["temperature", "top_p"]


def test_reasoning_effort_enables_thinking_with_room_for_the_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="turnout.translate"):
        out = anthropic_request(
            {"messages": [USER], "reasoning_effort": "high", "temperature": 0.3, "top_p": 0.97}
        )
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert out["max_tokens"] == DEFAULT_MAX_TOKENS + 8192
    assert "temperature" not in out and out["top_p"] == 0.97
    assert dropped(caplog) == ["temperature"]


def test_reasoning_effort_within_an_explicit_cap() -> None:
    out = anthropic_request(
        {"messages": [USER], "reasoning_effort": "high", "max_completion_tokens": 5000}
    )
    assert out["max_tokens"] == 5000
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 4999}
    low = anthropic_request({"messages": [USER], "reasoning_effort": "low", "max_tokens": 5000})
    assert low["thinking"]["budget_tokens"] == 2048


@pytest.mark.parametrize(
    "fields",
    [
        {"max_completion_tokens": 1000},
        {"tools": [WEATHER_TOOL], "tool_choice": "required"},
        {
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "18C"},
            ]
        },
        {"reasoning_effort": "extreme"},
    ],
    ids=["cap-below-minimum-budget", "forced-tool", "pending-tool-result", "unknown-effort"],
)
def test_reasoning_effort_anthropic_would_refuse_is_dropped(
    fields: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    body = {"messages": [USER], "reasoning_effort": "medium", **fields}
    with caplog.at_level(logging.WARNING, logger="turnout.translate"):
        out = anthropic_request(body)
    assert "thinking" not in out
    assert dropped(caplog) == ["reasoning_effort"]


def test_reasoning_effort_none_is_no_thinking(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="turnout.translate"):
        out = anthropic_request({"messages": [USER], "reasoning_effort": "none"})
    assert "thinking" not in out and dropped(caplog) == []


def test_missing_optional_fields_do_not_crash() -> None:
    """Shapes the client got wrong pass through for Anthropic to refuse with its own message."""
    out = request(
        {
            "messages": [
                {"role": "user"},
                {"role": "user", "content": [{"type": "image_url", "image_url": {}}]},
                {"role": "assistant"},
                {"role": "tool", "tool_call_id": "c1"},
                {"role": "user", "content": "hi"},
            ],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function"},
        },
        MODEL,
    )
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "c1"},
                {"type": "image", "source": {"type": "url", "url": ""}},
                text("hi"),
            ],
        }
    ]
    assert out["tool_choice"] == {"type": "tool", "name": None}


# --- response -------------------------------------------------------------------------------


def message(
    content: list[dict[str, Any]], stop_reason: str = "end_turn", **usage: int
) -> dict[str, Any]:
    """An Anthropic Messages response as the API returns it."""
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 25, "output_tokens": 12, **usage},
    }


def chat_completion(body: dict[str, Any]) -> dict[str, Any]:
    out = response(body, "anthropic/" + MODEL)
    ChatCompletion.model_validate(out)
    assert out["object"] == "chat.completion"
    assert out["id"] == "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL"
    assert out["model"] == "anthropic/" + MODEL
    assert isinstance(out["created"], int)
    return out


def test_text_response() -> None:
    out = chat_completion(message([text("Bonjour"), text(", Paris !")]))
    assert out["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Bonjour, Paris !"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert out["usage"] == {
        "prompt_tokens": 25,
        "completion_tokens": 12,
        "total_tokens": 37,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def test_tool_use_response() -> None:
    out = chat_completion(
        message(
            [
                {
                    "type": "tool_use",
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "name": "get_weather",
                    "input": {"city": "Paris", "units": ["celsius"]},
                }
            ],
            stop_reason="tool_use",
        )
    )
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["id"] == "toolu_01A09q90qw90lq917835lq9"
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "units": ["celsius"]}


def test_thinking_becomes_reasoning_content() -> None:
    out = chat_completion(
        message(
            [
                {"type": "thinking", "thinking": "Paris is in France.", "signature": "EqQB..."},
                {"type": "redacted_thinking", "data": "EmwKAhgB..."},
                text("It is in France."),
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}},
            ],
            stop_reason="tool_use",
        )
    )
    msg = out["choices"][0]["message"]
    assert msg["reasoning_content"] == "Paris is in France."
    assert msg["content"] == "It is in France."
    assert msg["tool_calls"][0]["function"]["arguments"] == "{}"
    assert ChatCompletion.model_validate(out).choices[0].message.model_extra == {
        "reasoning_content": "Paris is in France."
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
        ("pause_turn", "stop"),
    ],
)
def test_stop_reasons(stop_reason: str, finish_reason: str) -> None:
    out = chat_completion(message([text("...")], stop_reason=stop_reason))
    assert out["choices"][0]["finish_reason"] == finish_reason


def test_usage_counts_cached_prompt_tokens_in_the_prompt() -> None:
    out = chat_completion(
        message([text("ok")], cache_read_input_tokens=1800, cache_creation_input_tokens=200)
    )
    assert out["usage"] == {
        "prompt_tokens": 25 + 1800 + 200,
        "completion_tokens": 12,
        "total_tokens": 2037,
        "prompt_tokens_details": {"cached_tokens": 1800},
    }


def test_empty_response_has_empty_content() -> None:
    out = chat_completion(message([], stop_reason="max_tokens"))
    assert out["choices"][0]["message"] == {"role": "assistant", "content": ""}


# --- stream ---------------------------------------------------------------------------------

# Recorded from the Messages API: text, then a tool call whose input arrives in pieces.
RECORDED_TOOL_STREAM: list[tuple[str, str]] = [
    (
        "message_start",
        (
            '{"type":"message_start","message":{"model":"claude-sonnet-4-20250514",'
            '"id":"msg_01K2JbSUMYhez5RHoK9ZCj9U","type":"message","role":"assistant","content":[],'
            '"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":849,'
            '"cache_creation_input_tokens":0,"cache_read_input_tokens":512,"cache_creation":'
            '{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":10,'
            '"service_tier":"standard"}}}'
        ),
    ),
    (
        "content_block_start",
        '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
    ),
    ("ping", '{"type": "ping"}'),
    (
        "content_block_delta",
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me"}}',
    ),
    (
        "content_block_delta",
        (
            '{"type":"content_block_delta","index":0,'
            '"delta":{"type":"text_delta","text":" check the weather."}}'
        ),
    ),
    ("content_block_stop", '{"type":"content_block_stop","index":0}'),
    (
        "content_block_start",
        (
            '{"type":"content_block_start","index":1,"content_block":{"type":"tool_use",'
            '"id":"toolu_01KFbKqPYSuAKujiL6mTfzYA","name":"get_weather","input":{}}}'
        ),
    ),
    (
        "content_block_delta",
        (
            '{"type":"content_block_delta","index":1,'
            '"delta":{"type":"input_json_delta","partial_json":""}}'
        ),
    ),
    (
        "content_block_delta",
        (
            '{"type":"content_block_delta","index":1,'
            '"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": \\"Pa"}}'
        ),
    ),
    (
        "content_block_delta",
        (
            '{"type":"content_block_delta","index":1,'
            '"delta":{"type":"input_json_delta","partial_json":"ris\\", \\"days\\": 3}"}}'
        ),
    ),
    ("content_block_stop", '{"type":"content_block_stop","index":1}'),
    (
        "message_delta",
        (
            '{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
            '"usage":{"input_tokens":849,"cache_creation_input_tokens":0,'
            '"cache_read_input_tokens":512,"output_tokens":47}}'
        ),
    ),
    ("message_stop", '{"type":"message_stop"}'),
]


def translate(
    events: list[tuple[str, str]], include_usage: bool
) -> tuple[StreamTranslator, list[bytes]]:
    translator = StreamTranslator("anthropic/" + MODEL, include_usage)
    frames = [frame for name, data in events for frame in translator.event(name, data)]
    return translator, frames + translator.finish()


def decode(frames: list[bytes]) -> list[Any]:
    """Each frame's data: a chunk dict, or the string "[DONE]"."""
    payloads: list[Any] = []
    for frame in frames:
        assert frame.startswith(b"data: ") and frame.endswith(b"\n\n"), frame
        data = frame[len(b"data: ") : -2].decode()
        payloads.append(data if data == "[DONE]" else json.loads(data))
    return payloads


def test_recorded_tool_stream() -> None:
    translator, frames = translate(RECORDED_TOOL_STREAM, include_usage=False)
    assert translator.complete
    *chunks, done = decode(frames)
    assert done == "[DONE]"
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
        assert chunk["id"] == "chatcmpl-msg_01K2JbSUMYhez5RHoK9ZCj9U"
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "anthropic/" + MODEL
        assert chunk["created"] == chunks[0]["created"]
        assert "usage" not in chunk
        assert len(chunk["choices"]) == 1
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content") or "" for d in deltas) == "Let me check the weather."
    calls = [call for d in deltas for call in d.get("tool_calls", [])]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_01KFbKqPYSuAKujiL6mTfzYA",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(call["index"] == 0 for call in calls)
    arguments = "".join(call["function"]["arguments"] for call in calls)
    assert json.loads(arguments) == {"city": "Paris", "days": 3}
    finish_reasons = [chunk["choices"][0]["finish_reason"] for chunk in chunks]
    assert finish_reasons == [None] * (len(chunks) - 1) + ["tool_calls"]
    assert deltas[-1] == {}


def test_usage_chunk_only_with_include_usage() -> None:
    translator, frames = translate(RECORDED_TOOL_STREAM, include_usage=True)
    *chunks, usage_chunk, done = decode(frames)
    assert done == "[DONE]" and translator.complete
    assert all(chunk["usage"] is None for chunk in chunks)
    assert usage_chunk["choices"] == []
    assert usage_chunk["id"] == chunks[0]["id"]
    assert usage_chunk["usage"] == {
        "prompt_tokens": 849 + 512,
        "completion_tokens": 47,
        "total_tokens": 849 + 512 + 47,
        "prompt_tokens_details": {"cached_tokens": 512},
    }
    ChatCompletionChunk.model_validate(usage_chunk)
    _, without = translate(RECORDED_TOOL_STREAM, include_usage=False)
    assert len(without) == len(frames) - 1


def test_parallel_tool_calls_are_indexed_among_tool_calls() -> None:
    events = [
        RECORDED_TOOL_STREAM[0],
        *[
            (
                "content_block_start",
                json.dumps(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "tool_use", "id": f"toolu_{index}", "name": "f"},
                    }
                ),
            )
            for index in (0, 1)
        ],
        (
            "content_block_delta",
            (
                '{"type":"content_block_delta","index":1,'
                '"delta":{"type":"input_json_delta","partial_json":"{}"}}'
            ),
        ),
    ]
    _, frames = translate(events, include_usage=False)
    calls = [chunk["choices"][0]["delta"]["tool_calls"][0] for chunk in decode(frames)[1:]]
    assert [(call["index"], call.get("id")) for call in calls] == [
        (0, "toolu_0"),
        (1, "toolu_1"),
        (1, None),
    ]


def test_thinking_stream_becomes_reasoning_content() -> None:
    events = [
        RECORDED_TOOL_STREAM[0],
        (
            "content_block_start",
            (
                '{"type":"content_block_start","index":0,'
                '"content_block":{"type":"thinking","thinking":"","signature":""}}'
            ),
        ),
        (
            "content_block_delta",
            (
                '{"type":"content_block_delta","index":0,'
                '"delta":{"type":"thinking_delta","thinking":"Paris is in France."}}'
            ),
        ),
        (
            "content_block_delta",
            (
                '{"type":"content_block_delta","index":0,'
                '"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}}'
            ),
        ),
        ("content_block_stop", '{"type":"content_block_stop","index":0}'),
        (
            "message_delta",
            (
                '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
                '"usage":{"output_tokens":30}}'
            ),
        ),
        ("message_stop", '{"type":"message_stop"}'),
    ]
    translator, frames = translate(events, include_usage=False)
    chunks = decode(frames)
    assert [c["choices"][0]["delta"] for c in chunks[1:-1]] == [
        {"reasoning_content": "Paris is in France."},
        {},
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert translator.complete


def test_error_event_becomes_an_openai_error_frame() -> None:
    events = [
        *RECORDED_TOOL_STREAM[:4],
        (
            "error",
            '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
        ),
    ]
    translator, frames = translate(events, include_usage=True)
    assert frames[-1] == (
        b'data: {"error":{"message":"Overloaded","type":"server_error","param":null,'
        b'"code":"overloaded"}}\n\n'
    )
    assert translator.complete  # the error ends the stream; no second error frame follows
    assert b"[DONE]" not in b"".join(frames)


def test_truncated_stream_is_incomplete_and_never_done() -> None:
    translator, frames = translate(RECORDED_TOOL_STREAM[:9], include_usage=True)
    assert not translator.complete
    assert translator.finish() == []
    assert all(payload != "[DONE]" for payload in decode(frames))


def test_ping_unknown_and_late_events_make_no_frames() -> None:
    translator = StreamTranslator(MODEL, include_usage=True)
    assert translator.event("ping", '{"type": "ping"}') == []
    assert translator.event("content_block_stop", '{"type":"content_block_stop","index":0}') == []
    assert translator.event("future_event", '{"type": "future_event"}') == []
    interim = '{"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":5}}'
    assert translator.event("message_delta", interim) == []
    assert translator.event("message_start", "not json") == []
    for name, data in RECORDED_TOOL_STREAM:
        translator.event(name, data)
    assert translator.complete
    assert translator.event("message_stop", '{"type":"message_stop"}') == []
    assert translator.finish() == []


# --- the official OpenAI client reading translated answers ------------------------------------


class Reply:
    """What the stand-in gateway answers next: the translated bytes under test."""

    body = b""
    media_type = "application/json"


@pytest.fixture(scope="module")
def client() -> Iterator[openai.OpenAI]:
    """An OpenAI client whose gateway answers every chat completion with `Reply`."""

    async def completions(_: Request) -> Response:
        return Response(Reply.body, media_type=Reply.media_type)

    app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
    with ServerThread(app, free_port()) as server:
        yield openai.OpenAI(api_key="test", base_url=f"{server.url}/v1", max_retries=0)


def test_openai_client_reads_the_translated_stream(client: openai.OpenAI) -> None:
    _, frames = translate(RECORDED_TOOL_STREAM, include_usage=True)
    Reply.body, Reply.media_type = b"".join(frames), "text/event-stream"
    stream = client.chat.completions.create(
        model="router", messages=[USER], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "Let me check the weather."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 47


def test_openai_client_raises_on_the_translated_error_frame(client: openai.OpenAI) -> None:
    events = [
        *RECORDED_TOOL_STREAM[:4],
        ("error", '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'),
    ]
    _, frames = translate(events, include_usage=False)
    Reply.body, Reply.media_type = b"".join(frames), "text/event-stream"
    stream = client.chat.completions.create(model="router", messages=[USER], stream=True)
    with pytest.raises(openai.APIError, match="Overloaded"):
        list(stream)


def test_openai_client_reads_the_translated_response(client: openai.OpenAI) -> None:
    out = response(message([text("Bonjour")], cache_read_input_tokens=5), MODEL)
    Reply.body, Reply.media_type = json.dumps(out).encode(), "application/json"
    completion = client.chat.completions.create(model="router", messages=[USER])
    assert completion.choices[0].message.content == "Bonjour"
    assert completion.usage is not None and completion.usage.prompt_tokens == 30
