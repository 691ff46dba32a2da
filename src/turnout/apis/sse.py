"""Server-sent events: splitting a byte stream into (event, data) pairs, per the HTML spec."""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterable, AsyncIterator, Iterable


class SSEDecoder:
    """Fed one line at a time (without its line break); a blank line ends an event."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment, e.g. a keep-alive
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        return None

    def _dispatch(self) -> tuple[str, str] | None:
        event, data = self._event or "message", "\n".join(self._data)
        had_data = bool(self._data)
        self._event, self._data = "", []
        return (event, data) if had_data else None


def _lines(text: str) -> list[str]:
    """Lines without their breaks (providers end lines with LF or CRLF)."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def events_of(frames: Iterable[bytes]) -> list[tuple[str, str]]:
    """Complete SSE frames (our own output) as (event, data) pairs."""
    decoder = SSEDecoder()
    return [
        event
        for frame in frames
        for line in _lines(frame.decode())
        if (event := decoder.feed(line)) is not None
    ]


async def aiter_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs from a byte stream as it arrives; lines and characters may span
    chunks. An event left unfinished when the stream ends is discarded, as the spec says."""
    decoder = SSEDecoder()
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    async for chunk in chunks:
        *lines, pending = _lines(pending + text.decode(chunk))
        for line in lines:
            event = decoder.feed(line)
            if event is not None:
                yield event
