"""CPU per request of the upstream HTTP client alone: httpx against aiohttp (what turnout uses).

    python bench/proxy/client_cost.py [--requests 3000]

Both clients call the same fake upstream (started here) from one process, at concurrency 1,
16 and 64, with keep-alive pools; the figure is this process's CPU time per request, which is
what a gateway pays for its upstream client whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
HEADERS = {"content-type": "application/json"}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def with_httpx(url: str, concurrency: int, requests: int) -> float:
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=128)
    async with httpx.AsyncClient(limits=limits) as client:

        async def worker(count: int) -> None:
            for _ in range(count):
                request = client.build_request("POST", url, content=BODY, headers=HEADERS)
                response = await client.send(request, stream=True)
                await response.aread()
                await response.aclose()

        started = cpu_seconds()
        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
        return (cpu_seconds() - started) / requests * 1000


async def with_aiohttp(url: str, concurrency: int, requests: int) -> float:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as session:

        async def worker(count: int) -> None:
            for _ in range(count):
                async with session.post(url, data=BODY, headers=HEADERS) as response:
                    await response.read()

        started = cpu_seconds()
        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
        return (cpu_seconds() - started) / requests * 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def measure(url: str, requests: int) -> None:
    print("| concurrency | httpx CPU ms/request | aiohttp CPU ms/request |\n|--:|--:|--:|")
    for concurrency in (1, 16, 64):
        cost_httpx = await with_httpx(url, concurrency, requests)
        try:
            cost_aiohttp = f"{await with_aiohttp(url, concurrency, requests):.3f}"
        except ImportError:
            cost_aiohttp = "(aiohttp not installed)"
        print(f"| {concurrency} | {cost_httpx:.3f} | {cost_aiohttp} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    port = free_port()
    fake = Path(__file__).with_name("fake_upstream.py")
    upstream = subprocess.Popen([sys.executable, str(fake), "--port", str(port)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        asyncio.run(measure(f"http://127.0.0.1:{port}/v1/chat/completions", args.requests))
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)


if __name__ == "__main__":
    main()
