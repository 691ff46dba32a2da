"""The wire-format edge: request bodies of the three APIs to RoutingRequest, errors to envelopes."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout.apis import API_FORMATS, ApiFormat
from turnout.apis.errors import RequestError
from turnout.routing.conversation import RoutingRequest, Turn

CHAT = API_FORMATS["openai_chat"]
MESSAGES = API_FORMATS["anthropic_messages"]
RESPONSES = API_FORMATS["openai_responses"]

# The smallest valid body of each format, to vary one shared field at a time.
MINIMAL_BODIES: dict[str, dict[str, Any]] = {
    "openai_chat": {"messages": [{"role": "user", "content": "hi"}]},
    "anthropic_messages": {"messages": [{"role": "user", "content": "hi"}]},
    "openai_responses": {"input": "hi"},
}


def error_of(api: ApiFormat, body: object) -> RequestError:
    with pytest.raises(RequestError) as caught:
        api.parse_routing_request(body)
    return caught.value


# --- registry ---------------------------------------------------------------------------


def test_registry_names_the_three_formats() -> None:
    assert set(API_FORMATS) == {"openai_chat", "anthropic_messages", "openai_responses"}
    assert all(api.name == name for name, api in API_FORMATS.items())


# --- what all three formats share -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MINIMAL_BODIES))
def test_model_and_routing_preferences_are_read_and_unknown_fields_ignored(name: str) -> None:
    preferences = [{"name": "code", "description": "writing code", "models": ["openai/gpt-4o"]}]
    body = {
        **MINIMAL_BODIES[name],
        "model": "openai/gpt-4o",
        "routing_preferences": preferences,
        "temperature": 0.3,
        "stream": True,
        "metadata": {"user": "u1"},
    }
    request = API_FORMATS[name].parse_routing_request(body)
    assert request == RoutingRequest("openai/gpt-4o", (Turn("user", "hi"),), preferences)


@pytest.mark.parametrize("name", sorted(MINIMAL_BODIES))
def test_model_and_routing_preferences_are_optional(name: str) -> None:
    request = API_FORMATS[name].parse_routing_request(MINIMAL_BODIES[name])
    assert request.model is None
    assert request.routing_preferences is None


@pytest.mark.parametrize("name", sorted(MINIMAL_BODIES))
@pytest.mark.parametrize(
    ("field", "value"),
    [("model", 4), ("model", ["gpt-4o"]), ("routing_preferences", {"name": "code"})],
)
def test_shared_fields_of_the_wrong_type_are_refused(name: str, field: str, value: object) -> None:
    error = error_of(API_FORMATS[name], {**MINIMAL_BODIES[name], field: value})
    assert (error.status, error.kind, error.param) == (400, "invalid_request_error", field)


@pytest.mark.parametrize("name", sorted(MINIMAL_BODIES))
@pytest.mark.parametrize("body", [None, [], "messages", 3, True])
def test_a_body_that_is_not_an_object_is_refused(name: str, body: object) -> None:
    error = error_of(API_FORMATS[name], body)
    assert (error.status, error.kind, error.param) == (400, "invalid_request_error", None)


# --- OpenAI Chat Completions ------------------------------------------------------------


def test_chat_turns_in_order_with_roles_and_only_text() -> None:
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                    {"type": "file", "file": {"file_id": "file-1"}},
                    {"type": "text", "text": "And in this file?"},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "a cat"},
            {"role": "function", "name": "f", "content": [{"type": "text", "text": "a PDF"}]},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            {"role": "assistant", "content": "A cat and a PDF."},
        ],
    }
    assert CHAT.parse_routing_request(body).turns == (
        Turn("system", "Be brief."),
        Turn("system", "Answer in French."),
        Turn("user", "What is in this image?\nAnd in this file?"),
        Turn("assistant", ""),
        Turn("tool", "a cat"),
        Turn("tool", "a PDF"),
        Turn("assistant", ""),
        Turn("assistant", "A cat and a PDF."),
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "messages"),
        ({"messages": None}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": {"role": "user", "content": "hi"}}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": "hi"}, None]}, "messages[1]"),
        ({"messages": [{"content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": ["user"], "content": "hi"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": 42}]},
            "messages[1].content",
        ),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}]},
            "messages[0].content",
        ),
        ({"messages": [{"role": "user", "content": ["hi"]}]}, "messages[0].content[0]"),
        (
            {"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
            "messages[0].content[0].text",
        ),
    ],
)
def test_chat_bad_requests_name_the_param(body: object, param: str) -> None:
    error = error_of(CHAT, body)
    assert (error.status, error.kind, error.param) == (400, "invalid_request_error", param)
    assert param in error.message


# --- Anthropic Messages -----------------------------------------------------------------


def test_messages_turns_in_order_with_tool_results_as_tool_turns() -> None:
    body = {
        "model": "claude-sonnet-4-20250514",
        "max_tokens": 1024,
        "system": [
            {"type": "text", "text": "You are terse."},
            {"type": "text", "text": "Use tools.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Need the tool.", "signature": "sig"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "18C, sunny"}],
            },
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t2", "name": "w"}]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t2",
                        "content": [
                            {"type": "text", "text": "Rain tomorrow."},
                            {"type": "image", "source": {"type": "base64", "data": "AAAA"}},
                        ],
                    },
                    {"type": "text", "text": "Thanks. And Lyon?"},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                    {"type": "document", "source": {"type": "text", "data": "..."}},
                    {"type": "text", "text": "Summarise this."},
                ],
            },
        ],
    }
    assert MESSAGES.parse_routing_request(body).turns == (
        Turn("system", "You are terse.\nUse tools."),
        Turn("user", "Weather in Paris?"),
        Turn("assistant", "Let me check."),
        Turn("tool", "18C, sunny"),
        Turn("assistant", ""),
        Turn("tool", "Rain tomorrow."),
        Turn("user", "Thanks. And Lyon?"),
        Turn("user", "Summarise this."),
    )


def test_messages_system_string_and_empty_tool_result() -> None:
    body = {
        "system": "Be kind.",
        "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}],
    }
    assert MESSAGES.parse_routing_request(body).turns == (
        Turn("system", "Be kind."),
        Turn("tool", ""),
    )


def test_messages_without_system_have_no_system_turn() -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert MESSAGES.parse_routing_request(body).turns == (Turn("user", "hi"),)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"system": "hi"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [["user", "hi"]]}, "messages[0]"),
        ({"messages": [{"content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "system", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "tool", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "assistant", "content": None}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [7]}]}, "messages[0].content[0]"),
        (
            {"messages": [{"role": "user", "content": [{"type": None}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": ["a"]}]}]},
            "messages[0].content[0].text",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": 7}]}]},
            "messages[0].content[0].content",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": [1]}]}]},
            "messages[0].content[0].content[0]",
        ),
        ({"system": 5, "messages": [{"role": "user", "content": "hi"}]}, "system"),
        ({"system": {"type": "text"}, "messages": [{"role": "user", "content": "hi"}]}, "system"),
        (
            {"system": [{"type": "text"}], "messages": [{"role": "user", "content": "hi"}]},
            "system[0].text",
        ),
    ],
)
def test_messages_bad_requests_name_the_param(body: object, param: str) -> None:
    error = error_of(MESSAGES, body)
    assert (error.status, error.kind, error.param) == (400, "invalid_request_error", param)
    assert param in error.message


# --- OpenAI Responses -------------------------------------------------------------------


def test_responses_string_input_is_one_user_turn_after_instructions() -> None:
    body = {"model": "gpt-4.1", "instructions": "Be helpful.", "input": "Plan a trip."}
    assert RESPONSES.parse_routing_request(body).turns == (
        Turn("system", "Be helpful."),
        Turn("user", "Plan a trip."),
    )


def test_responses_item_list_turns_in_order() -> None:
    body = {
        "input": [
            {"role": "developer", "content": "Use metric units."},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Plan a trip"},
                    {"type": "input_image", "image_url": "https://x/y.png"},
                    {"type": "input_file", "file_id": "file-1"},
                    {"type": "input_text", "text": "to this place."},
                ],
            },
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Where to?", "annotations": []}],
            },
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "18C"}],
            },
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"type": "item_reference", "id": "msg_0"},
            {"role": "user", "content": "Paris"},
        ],
    }
    assert RESPONSES.parse_routing_request(body).turns == (
        Turn("system", "Use metric units."),
        Turn("user", "Plan a trip\nto this place."),
        Turn("assistant", "Where to?"),
        Turn("tool", "sunny"),
        Turn("tool", "18C"),
        Turn("system", "Be brief."),
        Turn("user", "Paris"),
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "input"),
        ({"instructions": "hi"}, "input"),
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": 5}, "input"),
        ({"input": {"role": "user", "content": "hi"}}, "input"),
        ({"input": [5]}, "input[0]"),
        ({"input": ["hi"]}, "input[0]"),
        ({"input": [{"type": 3, "role": "user", "content": "hi"}]}, "input[0].type"),
        ({"input": [{"content": "hi"}]}, "input[0].role"),
        ({"input": [{"role": "tool", "content": "hi"}]}, "input[0].role"),
        ({"input": [{"type": "message", "role": "user"}]}, "input[0].content"),
        ({"input": [{"role": "user", "content": 5}]}, "input[0].content"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_text", "text": 1}]}]},
            "input[0].content[0].text",
        ),
        ({"input": [{"role": "user", "content": [{"text": "hi"}]}]}, "input[0].content[0].type"),
        ({"input": [{"type": "function_call_output", "call_id": "c1"}]}, "input[0].output"),
        ({"input": [{"type": "function_call_output", "output": {"a": 1}}]}, "input[0].output"),
        ({"input": "hi", "instructions": 5}, "instructions"),
        ({"input": "hi", "instructions": [{"type": "input_text", "text": "x"}]}, "instructions"),
    ],
)
def test_responses_bad_requests_name_the_param(body: object, param: str) -> None:
    error = error_of(RESPONSES, body)
    assert (error.status, error.kind, error.param) == (400, "invalid_request_error", param)
    assert param in error.message


# --- fuzzing: a valid body with one value replaced or removed parses or is refused cleanly --

texts = st.text(max_size=8)
junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["type", "role", "text", "content"]) | texts, children)
    ),
    max_leaves=12,
)


def contents(part_types: list[str]) -> st.SearchStrategy[object]:
    part = st.fixed_dictionaries({"type": st.sampled_from(part_types), "text": texts})
    return texts | st.lists(part, max_size=3)


VALID_BODIES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "openai_chat": st.fixed_dictionaries(
        {
            "messages": st.lists(
                st.fixed_dictionaries(
                    {
                        "role": st.sampled_from(
                            ["system", "developer", "user", "assistant", "tool", "function"]
                        ),
                        "content": contents(["text", "image_url", "input_audio", "refusal"]),
                    }
                ),
                min_size=1,
                max_size=4,
            )
        },
        optional={"model": texts, "routing_preferences": st.just([])},
    ),
    "anthropic_messages": st.fixed_dictionaries(
        {
            "messages": st.lists(
                st.fixed_dictionaries(
                    {
                        "role": st.sampled_from(["user", "assistant"]),
                        "content": texts
                        | st.lists(
                            st.fixed_dictionaries(
                                {
                                    "type": st.sampled_from(
                                        ["text", "image", "tool_use", "thinking"]
                                    ),
                                    "text": texts,
                                }
                            )
                            | st.fixed_dictionaries(
                                {"type": st.just("tool_result"), "content": contents(["text"])}
                            ),
                            max_size=3,
                        ),
                    }
                ),
                min_size=1,
                max_size=4,
            )
        },
        optional={"system": contents(["text"]), "model": texts},
    ),
    "openai_responses": st.fixed_dictionaries(
        {
            "input": texts.filter(bool)
            | st.lists(
                st.fixed_dictionaries(
                    {
                        "role": st.sampled_from(["system", "developer", "user", "assistant"]),
                        "content": contents(["input_text", "output_text", "input_image"]),
                    },
                    optional={"type": st.just("message")},
                )
                | st.fixed_dictionaries(
                    {"type": st.just("function_call_output"), "output": contents(["input_text"])}
                )
                | st.fixed_dictionaries({"type": st.sampled_from(["function_call", "reasoning"])}),
                min_size=1,
                max_size=4,
            )
        },
        optional={"instructions": texts, "model": texts},
    ),
}


def locations(value: object, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every value inside a JSON value, itself included."""
    children: Iterable[tuple[Any, object]]
    if isinstance(value, dict):
        children = value.items()
    elif isinstance(value, list):
        children = enumerate(value)
    else:
        children = ()
    return [path] + [found for key, child in children for found in locations(child, (*path, key))]


@st.composite
def corrupted(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]]) -> object:
    """A valid body with one value, anywhere in it, replaced by junk or removed."""
    body = copy.deepcopy(draw(valid))
    path = draw(st.sampled_from(locations(body)))
    replacement = draw(junk)
    if not path:
        return replacement
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return body


@pytest.mark.parametrize("name", sorted(API_FORMATS))
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_valid_bodies_parse(name: str, data: st.DataObject) -> None:
    request = API_FORMATS[name].parse_routing_request(data.draw(VALID_BODIES[name]))
    assert all(isinstance(turn.text, str) for turn in request.turns)


@pytest.mark.parametrize("name", sorted(API_FORMATS))
@settings(max_examples=500, deadline=None)
@given(data=st.data())
def test_corrupted_bodies_parse_or_raise_request_error(name: str, data: st.DataObject) -> None:
    body = data.draw(corrupted(VALID_BODIES[name]))
    try:
        request = API_FORMATS[name].parse_routing_request(body)
    except RequestError as error:
        assert (error.status, error.kind) == (400, "invalid_request_error")
        assert error.param is None or error.param in error.message
    else:
        assert all(isinstance(turn.text, str) for turn in request.turns)


# --- error envelopes --------------------------------------------------------------------


def test_openai_envelope_shape() -> None:
    error = RequestError("`messages[2].content` must be a string.", param="messages[2].content")
    expected = {
        "error": {
            "message": "`messages[2].content` must be a string.",
            "type": "invalid_request_error",
            "param": "messages[2].content",
            "code": None,
        }
    }
    assert CHAT.error_body(error) == expected
    assert RESPONSES.error_body(error) == expected


@pytest.mark.parametrize(
    ("kind", "status", "openai_type", "code"),
    [
        ("invalid_request_error", 400, "invalid_request_error", None),
        ("authentication_error", 401, "invalid_request_error", "invalid_api_key"),
        ("permission_error", 403, "invalid_request_error", "permission_denied"),
        ("not_found_error", 404, "invalid_request_error", "not_found"),
        ("request_too_large", 413, "invalid_request_error", "request_too_large"),
        ("rate_limit_error", 429, "rate_limit_exceeded", "rate_limit_exceeded"),
        ("api_error", 500, "server_error", None),
        ("overloaded_error", 529, "server_error", "overloaded"),
        ("conflict_error", 409, "invalid_request_error", "conflict_error"),
        ("timeout_error", 504, "server_error", "timeout_error"),
    ],
)
def test_openai_envelope_maps_kinds_to_openai_types(
    kind: str, status: int, openai_type: str, code: str | None
) -> None:
    body = CHAT.error_body(RequestError("no", status=status, kind=kind))
    assert body == {"error": {"message": "no", "type": openai_type, "param": None, "code": code}}


@pytest.mark.parametrize(
    "kind",
    [
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "overloaded_error",
    ],
)
def test_anthropic_envelope_keeps_the_shared_kinds(kind: str) -> None:
    body = MESSAGES.error_body(RequestError("no", kind=kind, param="messages"))
    assert body == {"type": "error", "error": {"type": kind, "message": "no"}}


@pytest.mark.parametrize(
    ("status", "anthropic_type"), [(409, "invalid_request_error"), (504, "api_error")]
)
def test_anthropic_envelope_falls_back_by_status_for_other_kinds(
    status: int, anthropic_type: str
) -> None:
    body = MESSAGES.error_body(RequestError("no", status=status, kind="something_else"))
    assert body == {"type": "error", "error": {"type": anthropic_type, "message": "no"}}


@pytest.mark.parametrize("name", sorted(API_FORMATS))
def test_parse_errors_render_in_each_envelope(name: str) -> None:
    api = API_FORMATS[name]
    body = api.error_body(error_of(api, {"model": 1}))
    message = body["error"]["message"]
    assert isinstance(message, str) and message
