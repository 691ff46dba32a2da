"""What a decision costs when the LLM router is healthy, down, failing or hanging, against the
embedded router alone in the same process.

    python bench/llm_router_fallback.py [-n 200]

A stand-in router server (aiohttp, its own thread and event loop) answers `{"route": ...}` at
once, answers 500, or never answers; "down" is a port nothing listens on. The numbers are the
decision's wall time as a client of RoutingService sees it, and their ratio to the embedded-only
decision measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import threading
import time
from pathlib import Path

import numpy as np
from aiohttp import web

from turnout.config import Config, load_config, parse_config
from turnout.providers.upstream import UpstreamPool
from turnout.routing.conversation import RoutingRequest, Turn
from turnout.routing.decision import Decision, RoutingService
from turnout.routing.embedded import EmbeddedRouter
from turnout.routing.embedder import Embedder
from turnout.routing.llm import LlmRouter

DEMO = Path(__file__).resolve().parent.parent / "examples" / "model_routing_service" / "config.yaml"
REQUEST = RoutingRequest(None, (Turn("user", "Write a Python function that reverses a list"),))
TIMEOUT = 1.0
REPLY = {"choices": [{"message": {"role": "assistant", "content": '{"route": "code_generation"}'}}]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_router_server(port: int) -> None:
    async def healthy(request: web.Request) -> web.Response:
        return web.json_response(REPLY)

    async def failing(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "boom"}}, status=500)

    async def hanging(request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.json_response(REPLY)

    app = web.Application()
    app.router.add_post("/healthy/v1/chat/completions", healthy)
    app.router.add_post("/failing/v1/chat/completions", failing)
    app.router.add_post("/hanging/v1/chat/completions", hanging)

    def serve() -> None:
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    time.sleep(0.5)


def config_with_router(base: Config, url: str) -> Config:
    demo = DEMO.read_text().replace("$OPENAI_API_KEY", "sk-x").replace("$ANTHROPIC_API_KEY", "sk-x")
    router = f"""
  - model: arch/Arch-Router
    base_url: {url}
"""
    text = demo.replace("model_providers:\n", "model_providers:\n" + router.lstrip("\n"), 1)
    text += f"""
overrides:
  llm_routing_model: arch/Arch-Router
routing:
  llm:
    timeout_seconds: {TIMEOUT}
"""
    return parse_config(text, env={})


async def timed(service: RoutingService, n: int) -> tuple[list[float], list[Decision]]:
    samples, decisions = [], []
    for _ in range(n):
        started = time.perf_counter()
        decisions.append(await service.decide(REQUEST))
        samples.append((time.perf_counter() - started) * 1000)
    return samples, decisions


def p(samples: list[float], q: int) -> float:
    return float(np.percentile(samples, q))


async def main(n: int) -> None:
    logging.basicConfig(level=logging.ERROR)  # the fallbacks' warnings are the point, not news
    embedded = EmbeddedRouter(Embedder(threads=1))
    base = load_config(DEMO)
    port = free_port()
    start_router_server(port)
    down = f"http://127.0.0.1:{free_port()}"

    only = RoutingService(base, embedded)
    only.prepare()
    await timed(only, 20)
    baseline, _ = await timed(only, n)
    print(f"embedded router alone: p50 {p(baseline, 50):.2f} ms, p95 {p(baseline, 95):.2f} ms")

    scenarios = {
        "LLM router healthy (instant reply, loopback)": f"http://127.0.0.1:{port}/healthy/v1",
        "LLM router down (connection refused)": down,
        "LLM router answering 500": f"http://127.0.0.1:{port}/failing/v1",
        "LLM router hanging": f"http://127.0.0.1:{port}/hanging/v1",
    }
    for name, url in scenarios.items():
        pool = UpstreamPool()
        config = config_with_router(base, url)
        service = RoutingService(config, embedded, LlmRouter(config, pool))
        count = 6 if "hanging" in name else n
        samples, decisions = await timed(service, count)
        await pool.aclose()
        fallbacks = sorted({d.router_fallback or d.router for d in decisions})
        print(f"{name} ({', '.join(fallbacks)}):")
        print(f"  first 3 decisions: {', '.join(f'{s:.1f}' for s in samples[:3])} ms")
        rest = samples[3:]
        print(
            f"  after: p50 {p(rest, 50):.2f} ms (ratio {p(rest, 50) / p(baseline, 50):.2f} to the "
            f"embedded router alone), p95 {p(rest, 95):.2f} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=200)
    asyncio.run(main(parser.parse_args().n))
