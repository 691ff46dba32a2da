"""Server-sent events as providers send them, split across network chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from turnout.apis.sse import aiter_events, events_of


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def collect(*parts: bytes) -> list[tuple[str, str]]:
    async def run() -> list[tuple[str, str]]:
        return [event async for event in aiter_events(chunks(*parts))]

    return asyncio.run(run())


def test_named_and_unnamed_events() -> None:
    frames = [b'event: message_start\ndata: {"a": 1}\n\n', b"data: [DONE]\n\n"]
    assert events_of(frames) == [("message_start", '{"a": 1}'), ("message", "[DONE]")]


def test_lines_and_characters_split_across_chunks() -> None:
    assert collect(
        b'data: {"t": "caf', b"\xc3", b'\xa9"}\n', b"\nevent: ping\nda", b"ta: {}\n\n"
    ) == [
        ("message", '{"t": "café"}'),
        ("ping", "{}"),
    ]


def test_crlf_comments_and_multi_line_data() -> None:
    assert collect(b": keep-alive\r\n\r\ndata: one\r\ndata: two\r\n\r\n") == [
        ("message", "one\ntwo")
    ]


def test_an_event_cut_off_by_the_end_of_the_stream_is_discarded() -> None:
    assert collect(b"data: complete\n\n", b'data: {"half') == [("message", "complete")]
