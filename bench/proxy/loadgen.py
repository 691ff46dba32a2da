"""Closed-loop HTTP load generator with time to first SSE event, printed as one JSON line.

    python bench/proxy/loadgen.py --url http://127.0.0.1:18001/v1/chat/completions \
        --concurrency 16 --duration 5 [--stream]

wrk cannot see inside a response, so streams (time to the first `data:` line) need this client.
It speaks raw HTTP/1.1 over asyncio streams instead of httpx: an httpx request costs the client
about as much CPU as the gateway spends, and on 2 shared cores that would flatten the differences
being measured. N workers each keep one connection alive and send requests back to back until
the deadline; every read is time-boxed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from urllib.parse import urlsplit

READ_TIMEOUT_S = 10.0
BODY = {
    "model": "openai/gpt-4o-mini",
    "messages": [{"role": "user", "content": "Say hello in five words."}],
}


class Result:
    """Samples of all workers; latency and TTFT in seconds."""

    def __init__(self) -> None:
        self.latency: list[float] = []
        self.ttft: list[float] = []
        self.errors = 0


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile; NaN when there are no samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def build_request(host: str, port: int, path: str, stream: bool, key: str) -> bytes:
    body = json.dumps({**BODY, "stream": stream}).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {key}\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def read_body(reader: asyncio.StreamReader, head: bytes, started: float) -> float | None:
    """Read a Content-Length or chunked body; return the time of the first `data:` bytes."""
    lower = head.lower()
    first: float | None = None
    if b"transfer-encoding: chunked" in lower:
        seen = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                return first
            if first is None:
                seen = (seen + data[:size])[-64:]
                if b"data:" in seen:
                    first = time.perf_counter() - started
    length = 0
    for line in lower.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    data = await reader.readexactly(length)
    return time.perf_counter() - started if b"data:" in data else None


async def worker(
    host: str, port: int, request: bytes, stream: bool, deadline: float, result: Result
) -> None:
    """One keep-alive connection; reconnect after an error or a `connection: close`."""
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                if conn is None:
                    opening = asyncio.open_connection(host, port)
                    conn = await asyncio.wait_for(opening, READ_TIMEOUT_S)
                    started = time.perf_counter()
                reader, writer = conn
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
                ttft = await asyncio.wait_for(read_body(reader, head, started), READ_TIMEOUT_S)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                result.errors += 1
                if conn is not None:
                    conn[1].close()
                conn = None
                await asyncio.sleep(0.01)  # a refusing target must not become a busy loop
                continue
            elapsed = time.perf_counter() - started
            if not head.startswith(b"HTTP/1.1 200") or (stream and ttft is None):
                result.errors += 1
            else:
                result.latency.append(elapsed)
                if ttft is not None:
                    result.ttft.append(ttft)
            if b"connection: close" in head.lower():
                writer.close()
                conn = None
    finally:
        if conn is not None:
            conn[1].close()


async def run(
    url: str, concurrency: int, duration: float, stream: bool, key: str
) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = build_request(host, port, parts.path, stream, key)
    result = Result()
    started = time.perf_counter()
    deadline = started + duration
    tasks = [worker(host, port, request, stream, deadline, result) for _ in range(concurrency)]
    await asyncio.wait_for(asyncio.gather(*tasks), duration + 3 * READ_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    ms = 1000.0
    return {
        "requests": len(result.latency),
        "errors": result.errors,
        "rps": len(result.latency) / elapsed,
        "p50_ms": percentile(result.latency, 50) * ms,
        "p99_ms": percentile(result.latency, 99) * ms,
        "ttft_p50_ms": percentile(result.ttft, 50) * ms,
        "ttft_p99_ms": percentile(result.ttft, 99) * ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--key", default="sk-bench", help="sent as Authorization: Bearer")
    args = parser.parse_args()
    numbers = run(args.url, args.concurrency, args.duration, args.stream, args.key)
    print(json.dumps(asyncio.run(numbers)))


if __name__ == "__main__":
    main()
