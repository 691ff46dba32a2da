"""The assistant's text in responses of the three client APIs, edited; token usage read.

Bodies and streams come from the fake providers (tests/fakes.py, whose shapes the official SDKs
accept) and from turnout's own translators, so they are what the proxy will really see. Two
editors stand in for output guards: an uppercase one (edits in place, holds nothing back) and a
toy redactor that replaces "Paris" and holds back the last five characters, as a redactor must
while a match may still be coming.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import anthropic
import httpx
import openai

anthropic_http: Any
try:  # recent anthropic SDKs bring their own httpx fork and refuse httpx's clients
    import httpx2 as anthropic_http
except ImportError:  # pragma: no cover
    anthropic_http = httpx
import pytest
from anthropic.types import RawMessageStreamEvent
from fakes import Reply, ToolCall, _anthropic_plan, _openai_plan, _responses_plan
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from turnout.apis import chat_via_messages, messages_via_chat, responses_via_chat
from turnout.apis.response_text import (
    Api,
    Event,
    StreamTextEditor,
    TextStream,
    Usage,
    body_usage,
    edit_sse,
    encode_event,
    map_body_texts,
)
from turnout.apis.sse import events_of
from turnout.apis.translation import TRANSLATIONS

APIS: list[Api] = ["openai_chat", "anthropic_messages", "openai_responses"]
MODEL = "gpt-4o-mini"
TEXT = "Bonjour ! I met Ana in Paris; Paris était belle 🎉 and we left Paris"
REDACTED = TEXT.replace("Paris", "[CITY]")
WEATHER = ToolCall("get_weather", {"city": "Paris", "unit": "celsius"})
_ANTHROPIC_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
_RESPONSES_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
Path = tuple[Any, ...]


class Upper:
    """Edits each piece at once: no hold-back, so events map one to one."""

    def feed(self, piece: str) -> str:
        return piece.upper()

    def flush(self) -> str:
        return ""


class Redactor:
    """Replaces "Paris" with "[CITY]", holding back the last 5 characters (a match may span
    pieces), as a real streaming redactor does."""

    def __init__(self) -> None:
        self.held = ""

    def feed(self, piece: str) -> str:
        text = (self.held + piece).replace("Paris", "[CITY]")
        out, self.held = text[:-5], text[-5:]
        return out

    def flush(self) -> str:
        out, self.held = self.held, ""
        return out


def redact(text: str) -> str:
    return text.replace("Paris", "[CITY]")


# ---- sources: realistic bodies and streams ---------------------------------------------------


def chat_request(stream: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell me about Paris"}],
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def messages_request() -> dict[str, Any]:
    return {**chat_request(False), "max_tokens": 256}


def responses_request() -> dict[str, Any]:
    return {"model": MODEL, "input": "Tell me about Paris", "stream": True}


def parse(frames: Iterable[bytes]) -> list[Event]:
    """SSE frames as the (name, data) pairs edit_sse gives the editor."""
    events: list[Event] = []
    for name, raw in events_of(frames):
        try:
            data: Any = json.loads(raw)
        except ValueError:
            data = raw
        events.append((None if name == "message" else name, data))
    return events


def plan_events(plan: Any) -> list[Event]:
    return parse(event.encode() for event in plan.events)


def translator_frames(translator: Any, upstream: Sequence[Event]) -> list[bytes]:
    frames = [
        frame
        for name, data in upstream
        for frame in translator.event(
            name or "message", data if isinstance(data, str) else json.dumps(data)
        )
    ]
    return frames + translator.finish()


def translated(translator: Any, upstream: Sequence[Event]) -> list[Event]:
    return parse(translator_frames(translator, upstream))


SOURCES = [
    ("openai_chat", "fake"),
    ("openai_chat", "via messages"),
    ("anthropic_messages", "fake"),
    ("anthropic_messages", "via chat"),
    ("openai_responses", "fake via chat"),
    ("openai_responses", "via messages"),
]


def stream(api: Api, source: str, reply: Reply) -> list[Event]:
    """A client-format stream for `reply`, from a fake provider or through turnout's translators."""
    if source == "fake":
        if api == "openai_chat":
            return plan_events(_openai_plan(reply, chat_request()))
        return plan_events(_anthropic_plan(reply, messages_request()))
    if source == "fake via chat":
        return plan_events(_responses_plan(reply, responses_request()))
    if api == "openai_chat":  # an OpenAI client served by Claude
        upstream = plan_events(_anthropic_plan(reply, messages_request()))
        return translated(chat_via_messages.StreamTranslator(MODEL, True), upstream)
    if api == "anthropic_messages":  # an Anthropic client served by a chat model
        upstream = plan_events(_openai_plan(reply, chat_request()))
        return translated(messages_via_chat.StreamTranslator(MODEL), upstream)
    upstream = plan_events(_anthropic_plan(reply, messages_request()))
    chained = TRANSLATIONS[("openai_responses", "anthropic_messages")]
    return translated(chained.stream(responses_request(), MODEL), upstream)


def whole_body(api: Api, reply: Reply) -> dict[str, Any]:
    if api == "openai_chat":
        body = _openai_plan(reply, chat_request(False)).body
    elif api == "anthropic_messages":
        body = _anthropic_plan(reply, messages_request()).body
    else:
        body = _responses_plan(reply, {**responses_request(), "stream": False}).body
    assert isinstance(body, dict)
    return body


def run(
    api: Api, events: list[Event], new_editor: Callable[[], TextStream] | None
) -> tuple[list[Event], StreamTextEditor]:
    editor = StreamTextEditor(api, new_editor)
    out = [edited for name, data in events for edited in editor.event(name, data)]
    return out + editor.finish(), editor


def diff(a: Any, b: Any, path: Path = ()) -> dict[Path, tuple[Any, Any]]:
    """The leaves where two JSON values differ, by path."""
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return {p: d for key in a for p, d in diff(a[key], b[key], (*path, key)).items()}
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return {
            p: d for i, (x, y) in enumerate(zip(a, b)) for p, d in diff(x, y, (*path, i)).items()
        }
    return {} if a == b and type(a) is type(b) else {path: (a, b)}


# ---- client-side views of a stream ----------------------------------------------------------


def kind_of(name: str | None, data: Any) -> str | None:
    return data.get("type", name) if isinstance(data, dict) else name


def chat_texts(events: list[Event]) -> dict[tuple[int, str], str]:
    """What a client accumulating chat deltas ends with, per (choice, field)."""
    texts: dict[tuple[int, str], str] = {}
    for _, data in events:
        if not isinstance(data, dict):
            continue
        for choice in data.get("choices") or []:
            for field in ("content", "refusal"):
                piece = (choice.get("delta") or {}).get(field)
                if isinstance(piece, str):
                    key = (choice["index"], field)
                    texts[key] = texts.get(key, "") + piece
    return {key: text for key, text in texts.items() if text}


def block_texts(events: list[Event]) -> dict[int, str]:
    """What a client accumulating Messages text deltas ends with, per block."""
    texts: dict[int, str] = {}
    for name, data in events:
        if kind_of(name, data) == "content_block_start" and data["content_block"]["type"] == "text":
            texts[data["index"]] = data["content_block"]["text"]
        if kind_of(name, data) == "content_block_delta" and data["delta"]["type"] == "text_delta":
            texts[data["index"]] += data["delta"]["text"]
    return texts


def responses_views(events: list[Event]) -> dict[str, dict[tuple[int, int], str]]:
    """Each place a Responses stream says a part's text: deltas (accumulated) and final events."""
    views: dict[str, dict[tuple[int, int], str]] = {
        "deltas": {},
        "done": {},
        "part": {},
        "item": {},
        "final": {},
    }
    field = {"output_text": "text", "refusal": "refusal"}
    for name, data in events:
        kind = kind_of(name, data)
        key = (data.get("output_index"), data.get("content_index"))
        if kind in ("response.output_text.delta", "response.refusal.delta"):
            views["deltas"][key] = views["deltas"].get(key, "") + data["delta"]
        elif kind == "response.output_text.done":
            views["done"][key] = data["text"]
        elif kind == "response.refusal.done":
            views["done"][key] = data["refusal"]
        elif kind == "response.content_part.done" and data["part"]["type"] in field:
            views["part"][key] = data["part"][field[data["part"]["type"]]]
        elif kind == "response.output_item.done" and data["item"]["type"] == "message":
            for j, part in enumerate(data["item"]["content"]):
                views["item"][(data["output_index"], j)] = part[field[part["type"]]]
        elif kind in ("response.completed", "response.incomplete"):
            for i, item in enumerate(data["response"]["output"]):
                if item["type"] == "message":
                    for j, part in enumerate(item["content"]):
                        views["final"][(i, j)] = part[field[part["type"]]]
    return views


def assert_sdk_types(api: Api, events: list[Event]) -> None:
    """Every event validates as the official SDK's own stream event type."""
    for name, data in events:
        if api == "openai_chat":
            if data != "[DONE]":
                ChatCompletionChunk.model_validate(data)
        elif api == "anthropic_messages":
            assert name == data["type"]
            if name != "ping":  # the SDK skips pings before parsing
                _ANTHROPIC_EVENT.validate_python(data)
        else:
            assert name == data["type"]
            _RESPONSES_EVENT.validate_python(data)
    if api == "openai_responses":
        numbers = [data["sequence_number"] for _, data in events]
        assert numbers == list(range(len(numbers)))


# ---- whole bodies ------------------------------------------------------------------------------

# (api, body, the paths of its assistant texts)
BODY_CASES: list[tuple[str, Api, dict[str, Any], set[Path]]] = [
    (
        "chat text",
        "openai_chat",
        whole_body("openai_chat", Reply(TEXT)),
        {("choices", 0, "message", "content")},
    ),
    ("chat tool call", "openai_chat", whole_body("openai_chat", Reply(tool_call=WEATHER)), set()),
    (
        "chat two choices, a refusal, parts",
        "openai_chat",
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": TEXT, "reasoning_content": "Hmm"},
                    "finish_reason": "stop",
                },
                {
                    "index": 1,
                    "message": {"role": "assistant", "content": None, "refusal": "No, Paris"},
                    "finish_reason": "stop",
                },
                {
                    "index": 2,
                    "message": {
                        "role": "assistant",
                        "content": [
                            {"type": "text", "text": "Part one", "x-vendor": 1},
                            {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                        ],
                    },
                    "finish_reason": "stop",
                },
            ],
            "x-unknown": {"kept": True},
        },
        {
            ("choices", 0, "message", "content"),
            ("choices", 1, "message", "refusal"),
            ("choices", 2, "message", "content", 0, "text"),
        },
    ),
    (
        "messages text",
        "anthropic_messages",
        whole_body("anthropic_messages", Reply(TEXT)),
        {("content", 0, "text")},
    ),
    (
        "messages thinking, text, tool use",
        "anthropic_messages",
        messages_via_chat.response(
            {
                "id": "1",
                "choices": [
                    {
                        "message": {
                            "content": TEXT,
                            "reasoning_content": "The user wants Paris",
                            "tool_calls": [
                                {
                                    "id": "call_1",
                                    "function": {"name": "f", "arguments": '{"city": "Paris"}'},
                                }
                            ],
                        },
                        "finish_reason": "tool_calls",
                    }
                ],
            },
            MODEL,
        ),
        {("content", 1, "text")},
    ),
    (
        "responses text",
        "openai_responses",
        whole_body("openai_responses", Reply(TEXT)),
        {("output", 0, "content", 0, "text")},
    ),
    (
        "responses reasoning, text, refusal, call",
        "openai_responses",
        responses_via_chat.response(
            {
                "id": "1",
                "choices": [
                    {
                        "message": {
                            "content": TEXT,
                            "refusal": "I cannot say more about Paris",
                            "reasoning_content": "Paris again",
                            "tool_calls": [
                                {"id": "c", "function": {"name": "f", "arguments": '{"a": 1}'}}
                            ],
                        },
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4},
            },
            MODEL,
        ),
        {("output", 1, "content", 0, "text"), ("output", 1, "content", 1, "refusal")},
    ),
]


@pytest.mark.parametrize(
    ("api", "body", "paths"),
    [case[1:] for case in BODY_CASES],
    ids=[case[0] for case in BODY_CASES],
)
def test_a_body_has_each_assistant_text_edited_and_nothing_else(
    api: Api, body: dict[str, Any], paths: set[Path]
) -> None:
    original = json.loads(json.dumps(body))
    edited = map_body_texts(api, body, str.upper)
    changes = diff(body, edited)
    assert set(changes) == paths
    for before, after in changes.values():
        assert after == before.upper()
    assert body == original  # a copy: the input is left alone
    # Reversing is its own inverse: twice is the original, unknown fields and all.
    assert (
        map_body_texts(api, map_body_texts(api, body, lambda t: t[::-1]), lambda t: t[::-1]) == body
    )


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"choices": "x", "content": {"a": 1}, "output": 3},
        {"choices": [None, 1, {"message": "hi"}, {"message": {"content": 5, "refusal": []}}]},
        {"content": [None, "text", {"type": "text", "text": None}, {"type": "text"}]},
        {
            "output": [
                None,
                {"type": "message", "content": "x"},
                {"type": "message", "content": [7]},
            ]
        },
        {"output": [{"type": "message", "content": [{"type": ["output_text"], "text": "a"}]}]},
    ],
)
def test_a_malformed_body_is_copied_unchanged(api: Api, body: dict[str, Any]) -> None:
    edited = map_body_texts(api, body, lambda text: pytest.fail(f"edited {text!r}"))
    assert edited == body and (edited is not body or not body)


# ---- streams: edits in place ----------------------------------------------------------------

_TEXT_PATHS: dict[Api, Callable[[str | None, Path], bool]] = {
    "openai_chat": lambda kind, path: path[0] == "choices" and path[2:] == ("delta", "content"),
    "anthropic_messages": lambda kind, path: path == ("delta", "text"),
    "openai_responses": lambda kind, path: (
        path in (("delta",), ("text",), ("part", "text"))
        or (path[:2] == ("item", "content") and path[3:] == ("text",))
        or (path[:2] == ("response", "output") and path[3] == "content" and path[5:] == ("text",))
    ),
}


@pytest.mark.parametrize(("api", "source"), SOURCES)
def test_a_stream_has_each_text_edited_and_nothing_else(api: Api, source: str) -> None:
    events = stream(api, source, Reply(TEXT, chunks=6))
    out, editor = run(api, events, Upper)
    assert len(out) == len(events)  # nothing held back, nothing added
    edited = 0
    for (name, data), (out_name, out_data) in zip(events, out):
        assert out_name == name
        changes = diff(data, out_data)
        assert all(_TEXT_PATHS[api](kind_of(name, data), path) for path in changes), changes
        assert all(after == before.upper() for before, after in changes.values())
        if changes:
            edited += 1
        else:
            assert out_data is data  # untouched events are the very same objects
    assert edited >= 6
    assert editor.text_chars == len(TEXT)
    assert_sdk_types(api, out)


# ---- streams: hold-back, whole texts agree --------------------------------------------------


@pytest.mark.parametrize(("api", "source"), SOURCES)
@pytest.mark.parametrize("chunks", [1, 5, 11, 40])
def test_held_back_text_is_flushed_before_the_text_ends_and_whole_texts_agree(
    api: Api, source: str, chunks: int
) -> None:
    events = stream(api, source, Reply(TEXT, chunks=chunks))
    out, editor = run(api, events, Redactor)
    assert_sdk_types(api, out)
    if api == "openai_chat":
        assert chat_texts(out) == {(0, "content"): REDACTED}
        finish = next(i for i, (_, d) in enumerate(out) if _finish(d))
        assert chat_texts(out[:finish]) == {(0, "content"): REDACTED}  # all before the finish
    elif api == "anthropic_messages":
        assert block_texts(out) == {0: REDACTED}
        stop = next(i for i, e in enumerate(out) if kind_of(*e) == "content_block_stop")
        assert block_texts(out[:stop]) == {0: REDACTED}
    else:
        views = responses_views(out)
        assert all(view == {(0, 0): REDACTED} for view in views.values()), views
        done = next(i for i, e in enumerate(out) if kind_of(*e) == "response.output_text.done")
        assert responses_views(out[:done])["deltas"] == {(0, 0): REDACTED}
    assert editor.text_chars == len(TEXT)
    assert "Paris" not in json.dumps([data for _, data in out])


def _finish(data: Any) -> bool:
    return isinstance(data, dict) and any(
        c.get("finish_reason") is not None for c in data.get("choices") or []
    )


def chunk(*choices: dict[str, Any], usage: Any = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-n2",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "system_fingerprint": "fp_1",
        "choices": list(choices),
        "usage": usage,
    }


def choice(index: int, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


# Two choices (n=2) interleaved: one answers, one refuses; reasoning and a tool call around them.
TWO_CHOICES: list[Event] = [
    (None, chunk(choice(0, role="assistant", content=""), choice(1, role="assistant", content=""))),
    (None, chunk(choice(0, reasoning_content="They ask about Paris"))),
    (None, chunk(choice(0, content="Ana lives in Pa"))),
    (None, chunk(choice(1, refusal="I won't discuss Pa"))),
    (None, chunk(choice(0, content="ris, near Paris"), choice(1, refusal="ris or"))),
    (None, chunk(choice(1, refusal=" anyone in Paris"))),
    (None, chunk(choice(0, content=" Nord"))),
    (None, chunk(choice(0, "stop"), choice(1, refusal="!"))),
    (None, chunk(choice(1, "stop"))),
    (None, chunk(usage={"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42})),
    (None, "[DONE]"),
]


def test_two_chat_choices_each_have_their_own_editor_flushed_before_their_finish() -> None:
    out, editor = run("openai_chat", TWO_CHOICES, Redactor)
    assert_sdk_types("openai_chat", out)
    answer = "Ana lives in [CITY], near [CITY] Nord"
    refusal = "I won't discuss [CITY] or anyone in [CITY]!"
    assert chat_texts(out) == {(0, "content"): answer, (1, "refusal"): refusal}
    finishes = [i for i, (_, d) in enumerate(out) if _finish(d)]
    assert chat_texts(out[: finishes[0]])[(0, "content")] == answer
    # Choice 1's last piece rode on choice 0's finish chunk; its own finish ends it.
    assert chat_texts(out[: finishes[1]])[(1, "refusal")] == refusal
    assert out[-1] == (None, "[DONE]")
    reasoning = [c["delta"]["reasoning_content"] for _, d in out[1:2] for c in d["choices"]]
    assert reasoning == ["They ask about Paris"]  # reasoning is not the answer: left alone
    inserted = [d for _, d in out if d not in [e[1] for e in TWO_CHOICES]]
    assert all(d["id"] == "chatcmpl-n2" and d["usage"] is None for d in inserted if d != "[DONE]")
    assert editor.usage == Usage(12, 30)
    assert editor.text_chars == len(
        "Ana lives in Paris, near Paris Nord" + "I won't discuss Paris or anyone in Paris!"
    )


def test_a_chat_finish_chunk_that_carries_text_takes_the_flush_itself() -> None:
    events: list[Event] = [
        (None, chunk(choice(0, role="assistant", content="Hello from Par"))),
        (None, chunk(choice(0, "stop", content="is, bye"))),
        (None, "[DONE]"),
    ]
    out, _ = run("openai_chat", events, Redactor)
    assert len(out) == 3
    assert out[1][1]["choices"][0]["delta"]["content"].endswith("[CITY], bye")
    assert chat_texts(out) == {(0, "content"): "Hello from [CITY], bye"}


def test_chat_text_never_finished_is_flushed_before_done_or_at_the_end() -> None:
    events: list[Event] = [(None, chunk(choice(0, content="See you in Paris")))]
    out, _ = run("openai_chat", [*events, (None, "[DONE]")], Redactor)
    assert chat_texts(out) == {(0, "content"): "See you in [CITY]"} and out[-1][1] == "[DONE]"
    out, _ = run("openai_chat", events, Redactor)  # cut off: finish() flushes
    assert chat_texts(out) == {(0, "content"): "See you in [CITY]"}


@pytest.mark.parametrize(("api", "source"), SOURCES)
def test_tool_call_streams_pass_untouched(api: Api, source: str) -> None:
    events = stream(api, source, Reply(tool_call=WEATHER, chunks=4))
    out, editor = run(api, events, Redactor)
    assert len(out) == len(events)
    assert all(o[1] is e[1] and o[0] == e[0] for o, e in zip(out, events))
    assert editor.text_chars == 0 and editor.usage is not None


# A chat stream with reasoning, text and a tool call, as turnout's translators carry it onwards.
MIXED_CHAT: list[Event] = [
    (None, chunk(choice(0, role="assistant", content=""))),
    (None, chunk(choice(0, reasoning_content="Weather in Paris? "))),
    (None, chunk(choice(0, reasoning_content="Call the tool."))),
    (None, chunk(choice(0, content="Checking Pa"))),
    (None, chunk(choice(0, content="ris now"))),
    (
        None,
        chunk(
            choice(
                0,
                tool_calls=[
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ],
            )
        ),
    ),
    (None, chunk(choice(0, tool_calls=[{"index": 0, "function": {"arguments": '{"city": "Pa'}}]))),
    (None, chunk(choice(0, tool_calls=[{"index": 0, "function": {"arguments": 'ris"}'}}]))),
    (None, chunk(choice(0, "tool_calls"))),
    (None, chunk(usage={"prompt_tokens": 20, "completion_tokens": 15, "total_tokens": 35})),
    (None, "[DONE]"),
]


def test_messages_stream_with_thinking_text_and_tool_use_edits_only_the_text_block() -> None:
    events = translated(messages_via_chat.StreamTranslator(MODEL), MIXED_CHAT)
    out, editor = run("anthropic_messages", events, Redactor)
    assert_sdk_types("anthropic_messages", out)
    assert block_texts(out) == {1: "Checking [CITY] now"}
    thinking = [d["delta"]["thinking"] for _, d in out if d.get("delta", {}).get("thinking")]
    assert "".join(thinking) == "Weather in Paris? Call the tool."
    arguments = [d["delta"]["partial_json"] for _, d in out if "partial_json" in d.get("delta", {})]
    assert json.loads("".join(arguments)) == {"city": "Paris"}
    stop = next(i for i, e in enumerate(out) if e[1] == {"type": "content_block_stop", "index": 1})
    assert out[stop - 1][1]["delta"] == {"type": "text_delta", "text": "] now"}  # held back
    assert editor.usage == Usage(20, 15)


def test_responses_stream_with_reasoning_text_and_call_edits_only_the_message() -> None:
    events = translated(responses_via_chat.StreamTranslator(MODEL), MIXED_CHAT)
    out, editor = run("openai_responses", events, Redactor)
    assert_sdk_types("openai_responses", out)
    views = responses_views(out)
    assert all(view == {(1, 0): "Checking [CITY] now"} for view in views.values()), views
    final = out[-1][1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Weather in Paris? Call the tool."
    assert json.loads(final["output"][2]["arguments"]) == {"city": "Paris"}
    assert editor.usage == Usage(20, 15)


def test_a_responses_refusal_is_edited_like_text() -> None:
    events = translated(
        responses_via_chat.StreamTranslator(MODEL),
        [
            (None, chunk(choice(0, role="assistant", content=""))),
            (None, chunk(choice(0, refusal="I can't help with Pa"))),
            (None, chunk(choice(0, refusal="ris."))),
            (None, chunk(choice(0, "stop"))),
            (None, "[DONE]"),
        ],
    )
    out, _ = run("openai_responses", events, Redactor)
    assert_sdk_types("openai_responses", out)
    views = responses_views(out)
    assert all(view == {(0, 0): "I can't help with [CITY]."} for view in views.values()), views


def test_responses_text_seen_only_in_final_events_is_edited_there_too() -> None:
    part = {"type": "output_text", "text": "In Paris", "annotations": []}
    item = {"id": "msg_1", "type": "message", "role": "assistant", "content": [part]}
    events: list[Event] = [
        ("response.output_text.done", {"type": "response.output_text.done", "sequence_number": 0,
                                       "item_id": "msg_1", "output_index": 0, "content_index": 0,
                                       "text": "In Paris"}),
        ("response.output_item.done", {"type": "response.output_item.done", "sequence_number": 1,
                                       "output_index": 0, "item": item}),
        ("response.completed", {"type": "response.completed", "sequence_number": 2,
                                "response": {"output": [item], "usage": None}}),
    ]  # fmt: skip
    out, _ = run("openai_responses", events, Redactor)
    views = responses_views(out)
    assert views["done"] == views["item"] == views["final"] == {(0, 0): "In [CITY]"}


@pytest.mark.parametrize(("api", "source"), SOURCES)
def test_a_stream_cut_off_has_its_held_text_flushed_by_finish(api: Api, source: str) -> None:
    events = stream(api, source, Reply(TEXT, chunks=4))
    ends = {"content_block_stop", "response.output_text.done"}
    cut = next(i for i, e in enumerate(events) if _finish(e[1]) or kind_of(*e) in ends)
    editor = StreamTextEditor(api, Redactor)
    out = [edited for name, data in events[:cut] for edited in editor.event(name, data)]
    tail = editor.finish()
    assert len(tail) == 1
    if api == "openai_chat":
        assert chat_texts(out + tail) == {(0, "content"): REDACTED}
    elif api == "anthropic_messages":
        assert block_texts(out + tail) == {0: REDACTED}
    else:
        assert responses_views(out + tail)["deltas"] == {(0, 0): REDACTED}
        assert tail[0][1]["sequence_number"] == out[-1][1]["sequence_number"] + 1
    assert_sdk_types(api, out + tail)
    assert editor.finish() == []


@pytest.mark.parametrize(
    ("api", "error"),
    [
        ("openai_chat", (None, {"error": {"message": "upstream failed", "type": "server_error"}})),
        ("anthropic_messages", ("error", {"type": "error", "error": {"type": "api_error"}})),
        ("openai_responses", ("error", {"type": "error", "sequence_number": 99, "message": "x"})),
    ],
)
def test_held_text_goes_out_before_an_error_event(api: Api, error: Event) -> None:
    source = "fake via chat" if api == "openai_responses" else "fake"
    events = stream(api, source, Reply(TEXT, chunks=4))
    ends = {"content_block_stop", "response.output_text.done"}
    cut = next(i for i, e in enumerate(events) if _finish(e[1]) or kind_of(*e) in ends)
    out, _ = run(api, [*events[:cut], error], Redactor)
    renumbered = {key: value for key, value in out[-1][1].items() if key != "sequence_number"}
    assert out[-1][0] == error[0] and renumbered.items() <= error[1].items()
    texts = {
        "openai_chat": lambda o: chat_texts(o)[(0, "content")],
        "anthropic_messages": lambda o: block_texts(o)[0],
        "openai_responses": lambda o: responses_views(o)["deltas"][(0, 0)],
    }
    assert texts[api](out[:-1]) == REDACTED


# ---- the official SDKs read the edited stream -----------------------------------------------


def sse_bytes(api: Api, events: list[Event]) -> bytes:
    return b"".join(encode_event(api, name, data) for name, data in events)


def through_edit_sse(api: Api, raw: bytes, new_editor: Callable[[], TextStream] | None) -> bytes:
    """The bytes through edit_sse, arriving in 7-byte chunks (cutting lines and characters)."""
    editor = StreamTextEditor(api, new_editor)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(raw), 7):
            yield raw[i : i + 7]

    async def collect() -> bytes:
        return b"".join([piece async for piece in edit_sse(chunks(), editor, api)])

    return asyncio.run(collect())


def sdk_http(body: bytes, http: Any = httpx) -> Any:
    """An HTTP client whose every response is `body` as an event stream: the SDK parses the
    bytes exactly as it would from the network. (The anthropic SDK ships its own httpx fork.)"""

    def handler(request: Any) -> Any:
        return http.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return http.Client(transport=http.MockTransport(handler))


def openai_client(body: bytes) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="k", base_url="http://gw/v1", http_client=sdk_http(body), max_retries=0
    )


@pytest.mark.parametrize("source", ["fake", "via messages"])
def test_the_openai_sdk_reads_an_edited_chat_stream(source: str) -> None:
    raw = sse_bytes("openai_chat", stream("openai_chat", source, Reply(TEXT, chunks=9)))
    edited = through_edit_sse("openai_chat", raw, Redactor)
    client = openai_client(edited)
    with client.chat.completions.stream(
        model=MODEL, messages=[{"role": "user", "content": "hi"}]
    ) as s:
        deltas = "".join(e.delta for e in s if e.type == "content.delta")
        final = s.get_final_completion()
    assert deltas == final.choices[0].message.content == REDACTED
    assert final.usage is not None and final.usage.completion_tokens > 0


def test_the_openai_sdk_reads_two_edited_choices() -> None:
    edited = through_edit_sse("openai_chat", sse_bytes("openai_chat", TWO_CHOICES), Redactor)
    client = openai_client(edited)
    with client.chat.completions.stream(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], n=2
    ) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.content == "Ana lives in [CITY], near [CITY] Nord"
    assert final.choices[1].message.refusal == "I won't discuss [CITY] or anyone in [CITY]!"
    assert [c.finish_reason for c in final.choices] == ["stop", "stop"]


@pytest.mark.parametrize("source", ["fake", "via chat"])
def test_the_anthropic_sdk_reads_an_edited_messages_stream(source: str) -> None:
    raw = sse_bytes(
        "anthropic_messages", stream("anthropic_messages", source, Reply(TEXT, chunks=9))
    )
    edited = through_edit_sse("anthropic_messages", raw, Redactor)
    client = anthropic.Anthropic(
        api_key="k",
        base_url="http://gw",
        http_client=sdk_http(edited, anthropic_http),
        max_retries=0,
    )
    messages: Any = [{"role": "user", "content": "hi"}]
    with client.messages.stream(model=MODEL, max_tokens=64, messages=messages) as s:
        deltas = "".join(s.text_stream)
        final = s.get_final_message()
    assert final.content[0].type == "text"
    assert deltas == final.content[0].text == REDACTED


@pytest.mark.parametrize("source", ["fake via chat", "via messages"])
def test_the_openai_sdk_reads_an_edited_responses_stream(source: str) -> None:
    raw = sse_bytes("openai_responses", stream("openai_responses", source, Reply(TEXT, chunks=9)))
    edited = through_edit_sse("openai_responses", raw, Redactor)
    client = openai_client(edited)
    with client.responses.stream(model=MODEL, input="hi") as s:
        events = list(s)
        final = s.get_final_response()
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = [e.text for e in events if e.type == "response.output_text.done"]
    assert deltas == final.output_text == REDACTED and done == [REDACTED]
    assert [e.sequence_number for e in events] == list(range(len(events)))


# ---- usage --------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
def test_usage_of_a_body_and_of_its_stream_agree(api: Api) -> None:
    reply = Reply(TEXT)
    body = whole_body(api, reply)
    usage = body_usage(api, body)
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens == 17
    source = "fake via chat" if api == "openai_responses" else "fake"
    _, editor = run(api, stream(api, source, reply), None)
    assert editor.usage == usage


@pytest.mark.parametrize(
    ("api", "body", "expected"),
    [
        ("openai_chat", {"usage": {"prompt_tokens": 100, "completion_tokens": 7}}, Usage(100, 7)),
        (
            "openai_chat",
            {"usage": {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 80}}},
            Usage(100, 7),
        ),
        (
            "anthropic_messages",
            {"usage": {"input_tokens": 10, "cache_creation_input_tokens": 200,
                       "cache_read_input_tokens": 3000, "output_tokens": 5}},
            Usage(3210, 5),
        ),
        (
            "anthropic_messages",
            {"usage": {"input_tokens": 10, "cache_creation_input_tokens": None, "output_tokens": 5}},
            Usage(10, 5),
        ),
        ("openai_responses", {"usage": {"input_tokens": 9, "output_tokens": 4, "total_tokens": 13}}, Usage(9, 4)),
        ("openai_chat", {}, None),
        ("openai_chat", {"usage": None}, None),
        ("openai_chat", {"usage": {"prompt_tokens": "100", "completion_tokens": 7}}, None),
        ("openai_chat", {"usage": {"prompt_tokens": True, "completion_tokens": 7}}, None),
        ("openai_chat", {"usage": {"input_tokens": 1, "output_tokens": 2}}, None),
        ("anthropic_messages", {"usage": {"input_tokens": -1, "output_tokens": 2}}, None),
        ("anthropic_messages", {"usage": {"input_tokens": 1, "cache_read_input_tokens": "9", "output_tokens": 2}}, None),
        ("anthropic_messages", {"usage": [1, 2]}, None),
        ("openai_responses", {"usage": {"input_tokens": 1.5, "output_tokens": 2}}, None),
        ("openai_responses", {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}, None),
    ],
)  # fmt: skip
def test_body_usage(api: Api, body: dict[str, Any], expected: Usage | None) -> None:
    assert body_usage(api, body) == expected


def test_body_usage_of_something_that_is_not_a_body_is_none() -> None:
    bad: Any = ["usage"]
    assert body_usage("openai_chat", bad) is None


def test_messages_stream_usage_adds_the_cache_and_takes_message_delta_counts() -> None:
    start = {
        "type": "message_start",
        "message": {
            "usage": {
                "input_tokens": 12,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 1000,
                "output_tokens": 1,
            }
        },
    }
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 42},
    }
    # Newer streams repeat the input counts in message_delta: they are totals, not increments.
    later = {
        "type": "message_delta",
        "delta": {},
        "usage": {"input_tokens": 12, "cache_read_input_tokens": 1000, "output_tokens": 50},
    }
    editor = StreamTextEditor("anthropic_messages", None)
    editor.event("message_start", start)
    assert editor.usage == Usage(1012, 1)
    editor.event("message_delta", delta)
    assert editor.usage == Usage(1012, 42)
    editor.event("message_delta", later)
    assert editor.usage == Usage(1012, 50)


def test_stream_usage_is_none_without_a_usage_report() -> None:
    events = plan_events(_openai_plan(Reply(TEXT), {**chat_request(), "stream_options": None}))
    _, editor = run("openai_chat", events, None)
    assert editor.usage is None and editor.text_chars == len(TEXT)


# ---- malformed events ----------------------------------------------------------------------------

MALFORMED: dict[Api, list[Event]] = {
    "openai_chat": [
        (None, {}),
        (None, {"choices": "x"}),
        (None, {"choices": [1, None, {"delta": "str"}, {"index": "0", "delta": None}]}),
        (None, {"choices": [{"index": 0, "delta": {"content": 5, "refusal": ["a"]}}]}),
        (None, {"choices": [{"delta": {"content": None, "tool_calls": "x"}, "finish_reason": 3}]}),
        (None, {"usage": "many"}),
        (None, {"usage": {"prompt_tokens": "1", "completion_tokens": None}, "choices": []}),
        (None, [1, 2]),
        (None, 42),
        (None, None),
        (None, "not json {"),
        ("ping", {"type": "ping"}),
    ],
    "anthropic_messages": [
        ("content_block_delta", {"type": "content_block_delta"}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": "x"}),
        ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "text_delta", "text": 7}}),
        ("content_block_delta", {"type": "content_block_delta", "delta": {"text": "no type"}}),
        ("content_block_start", {"type": "content_block_start", "content_block": "text"}),
        ("content_block_start", {"type": "content_block_start", "content_block": {"type": "text", "text": None}}),
        ("content_block_stop", {"type": "content_block_stop", "index": [1]}),
        ("message_start", {"type": "message_start", "message": "m"}),
        ("message_start", {"type": "message_start", "message": {"usage": []}}),
        ("message_delta", {"type": "message_delta", "usage": {"output_tokens": "9"}}),
        ("message_delta", {"type": "message_delta", "usage": None}),
        (None, {"type": 5}),
        ("message_stop", "oops"),
        ("mystery", {"type": ["content_block_delta"]}),
    ],
    "openai_responses": [
        ("response.output_text.delta", {"type": "response.output_text.delta"}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": 3}),
        ("response.refusal.delta", {"type": "response.refusal.delta", "delta": None, "output_index": "a"}),
        ("response.output_text.done", {"type": "response.output_text.done", "text": None}),
        ("response.refusal.done", {"type": "response.refusal.done"}),
        ("response.content_part.added", {"type": "response.content_part.added", "part": "p"}),
        ("response.content_part.added", {"type": "response.content_part.added", "part": {"type": ["x"]}}),
        ("response.content_part.added", {"type": "response.content_part.added", "part": {"type": "output_text", "text": 3}}),
        ("response.content_part.done", {"type": "response.content_part.done", "part": {"type": "refusal"}}),
        ("response.output_item.done", {"type": "response.output_item.done", "item": {"type": "message", "content": "c"}, "output_index": 0}),
        ("response.output_item.done", {"type": "response.output_item.done", "item": [], "output_index": "0"}),
        ("response.output_item.done", {"type": "response.output_item.done", "item": {"type": "message", "content": []}}),
        ("response.completed", {"type": "response.completed", "response": {"output": "o"}}),
        ("response.completed", {"type": "response.completed", "response": None, "sequence_number": "1"}),
        ("response.completed", {"type": "response.completed", "response": {"output": [None, {"type": "message", "content": [None, {"type": "output_text"}]}], "usage": {"input_tokens": "1"}}}),
        ("response.in_progress", {"type": "response.in_progress", "response": {"usage": 5}}),
        (None, "[DONE]"),
    ],
}  # fmt: skip


@pytest.mark.parametrize("api", APIS)
def test_malformed_events_pass_through_unchanged(api: Api) -> None:
    for new_editor in (Redactor, None):
        editor = StreamTextEditor(api, new_editor)
        for name, data in MALFORMED[api]:
            out = editor.event(name, data)
            assert len(out) == 1 and out[0][0] == name and out[0][1] is data, (name, data)
        assert editor.finish() == [] and editor.usage is None and editor.text_chars == 0


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["", "Paris", "x", "message"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "index",
                    "delta",
                    "text",
                    "content",
                    "refusal",
                    "choices",
                    "finish_reason",
                    "output_index",
                    "content_index",
                    "part",
                    "item",
                    "response",
                    "output",
                    "usage",
                    "message",
                    "content_block",
                    "sequence_number",
                    "item_id",
                    "error",
                    "input_tokens",
                    "output_tokens",
                    "prompt_tokens",
                    "completion_tokens",
                ]
            ),
            inner | st.sampled_from(["text", "text_delta", "output_text", "refusal", "message"]),
            max_size=6,
        )
    ),
    max_leaves=25,
)
_TYPES = st.sampled_from(
    ["content_block_start", "content_block_delta", "content_block_stop", "message_start",
     "message_delta", "message_stop", "error", "response.content_part.added",
     "response.output_text.delta", "response.refusal.delta", "response.output_text.done",
     "response.refusal.done", "response.content_part.done", "response.output_item.done",
     "response.completed", "response.failed", "response.in_progress"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    api=st.sampled_from(APIS),
    events=st.lists(
        st.tuples(st.none() | _TYPES, st.one_of(_JSON, st.builds(lambda t, d: {**d, "type": t} if isinstance(d, dict) else d, _TYPES, _JSON))),
        max_size=8,
    ),
)  # fmt: skip
def test_arbitrary_events_never_raise_and_stay_encodable(api: Api, events: list[Event]) -> None:
    editor = StreamTextEditor(api, Redactor)
    out = [edited for name, data in events for edited in editor.event(name, data)]
    out += editor.finish()
    for name, data in out:
        encode_event(api, name, data)
    assert editor.usage is None or isinstance(editor.usage, Usage)


# ---- passthrough, framing, edit_sse -------------------------------------------------------------


@pytest.mark.parametrize(("api", "source"), SOURCES)
def test_without_an_editor_events_pass_through_and_are_measured(api: Api, source: str) -> None:
    events = stream(api, source, Reply(TEXT, chunks=5))
    out, editor = run(api, events, None)
    assert len(out) == len(events) and all(o[1] is e[1] for o, e in zip(out, events))
    assert editor.text_chars == len(TEXT)
    assert editor.usage is not None and editor.usage.output_tokens == 17


def test_encode_event_frames_each_api_as_it_is_sent() -> None:
    data = {"type": "x", "a": [1, "é"]}
    assert encode_event("openai_chat", None, data) == b'data: {"type":"x","a":[1,"\\u00e9"]}\n\n'
    assert encode_event("openai_chat", None, "[DONE]") == b"data: [DONE]\n\n"
    assert (
        encode_event("openai_chat", "error", {"error": {}})
        == b'event: error\ndata: {"error":{}}\n\n'
    )
    assert encode_event("openai_chat", "message", {}) == b"data: {}\n\n"
    ping = b'event: ping\ndata: {"type": "ping"}\n\n'
    assert encode_event("anthropic_messages", "ping", {"type": "ping"}) == ping
    assert encode_event("anthropic_messages", None, {"type": "ping"}) == ping  # named by its type
    done = {"type": "response.output_text.done", "sequence_number": 3, "text": "hi"}
    assert encode_event("openai_responses", None, done) == (
        b"event: response.output_text.done\n"
        b'data: {"type": "response.output_text.done", "sequence_number": 3, "text": "hi"}\n\n'
    )
    assert encode_event("openai_responses", "x", "line one\nline two") == (
        b"event: x\ndata: line one\ndata: line two\n\n"
    )


@pytest.mark.parametrize(
    ("api", "translator", "upstream"),
    [
        ("openai_chat", lambda: chat_via_messages.StreamTranslator(MODEL, True), "anthropic"),
        ("anthropic_messages", lambda: messages_via_chat.StreamTranslator(MODEL), "openai"),
        ("openai_responses", lambda: responses_via_chat.StreamTranslator(MODEL), "openai"),
    ],
)
def test_encode_event_writes_what_turnouts_translators_write(
    api: Api, translator: Callable[[], Any], upstream: str
) -> None:
    reply = Reply(TEXT, chunks=3)
    if upstream == "openai":
        events = plan_events(_openai_plan(reply, chat_request()))
    else:
        events = plan_events(_anthropic_plan(reply, messages_request()))
    frames = translator_frames(translator(), events)
    assert sse_bytes(api, parse(frames)) == b"".join(frames)


@pytest.mark.parametrize(("api", "source"), SOURCES)
def test_edit_sse_keeps_untouched_frames_byte_for_byte(api: Api, source: str) -> None:
    plan_source = stream(api, source, Reply(TEXT, chunks=4))
    raw = sse_bytes(api, plan_source)
    assert through_edit_sse(api, raw, None) == raw
    edited = parse([through_edit_sse(api, raw, Upper)])
    assert len(edited) == len(plan_source)
    texts = {
        "openai_chat": lambda o: chat_texts(o)[(0, "content")],
        "anthropic_messages": lambda o: block_texts(o)[0],
        "openai_responses": lambda o: responses_views(o)["final"][(0, 0)],
    }
    assert texts[api](edited) == TEXT.upper()


def test_edit_sse_passes_comments_done_and_non_json_data_and_drops_an_unfinished_event() -> None:
    raw = (
        b": keep-alive\r\n\r\n"
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"Paris \xc3\xa9t\xc3\xa9"},"finish_reason":null}]}\r\n\r\n'
        b"data: not json at all\n\n"
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
        b'data: {"unfinished": '
    )
    out = through_edit_sse("openai_chat", raw, Redactor)
    frames = out.split(b"\n\n")
    assert frames[0] == b": keep-alive"
    assert b"data: not json at all" in frames
    assert out.endswith(b"data: [DONE]\n\n") and b"unfinished" not in out
    events = parse([out])
    assert chat_texts(events) == {(0, "content"): "[CITY] été"}
    assert [e[1] for e in events if isinstance(e[1], str)] == ["not json at all", "[DONE]"]


def test_edit_sse_flushes_what_is_held_when_the_stream_ends_early() -> None:
    raw = b'data: {"choices":[{"index":0,"delta":{"content":"Bye from Paris"}}]}\n\n'
    events = parse([through_edit_sse("openai_chat", raw, Redactor)])
    assert chat_texts(events) == {(0, "content"): "Bye from [CITY]"}
