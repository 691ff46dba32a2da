"""A fake OpenAI upstream fast enough not to be the bottleneck of a proxy benchmark.

    python bench/proxy/fake_upstream.py --port 18001

A bare asyncio.Protocol (no framework, no JSON parsing) answers every POST with a fixed
chat.completion, or with a 5-chunk SSE stream plus `data: [DONE]` when the body asks for
`"stream": true`; any GET answers 200 (readiness). HTTP/1.1 keep-alive, pipelining-safe, bodies
framed by Content-Length (what httpx, aiohttp and wrk send). Separate from tests/ on purpose: the
benchmark must not change when the test fakes do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket

STREAM_TRUE = re.compile(rb'"stream"\s*:\s*true')
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
CREATED = 1_700_000_000
MODEL = "gpt-4o-mini"

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the fake upstream."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15},
    },
    separators=(",", ":"),
).encode()

JSON_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    % len(COMPLETION)
) + COMPLETION
GET_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def _chunk(delta: dict[str, str], finish: str | None) -> bytes:
    event = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    data = b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


# Each SSE event is its own HTTP chunk and its own write, so a relay sees a real stream.
STREAM_EVENTS = [
    _chunk({"role": "assistant", "content": ""}, None),
    _chunk({"content": "Hello"}, None),
    _chunk({"content": " from"}, None),
    _chunk({"content": " the fake."}, None),
    _chunk({}, "stop"),
    b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n",
]


class FakeUpstream(asyncio.Protocol):
    """One connection: buffer bytes, answer each complete request in order."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            match = CONTENT_LENGTH.search(head)
            size = int(match.group(1)) if match else 0
            if len(self.buffer) < end + 4 + size:
                return
            body = self.buffer[end + 4 : end + 4 + size]
            self.buffer = self.buffer[end + 4 + size :]
            self.answer(head, body)

    def answer(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        if not head.startswith(b"POST"):
            self.transport.write(GET_RESPONSE)
        elif STREAM_TRUE.search(body):
            self.transport.write(STREAM_HEAD)
            for event in STREAM_EVENTS:
                self.transport.write(event)
        else:
            self.transport.write(JSON_RESPONSE)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FakeUpstream, host, port, backlog=1024, reuse_address=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
