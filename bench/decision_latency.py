"""Decision latency, start-up and memory of the embedded router, with same-run baselines.

    python bench/decision_latency.py [--decisions 300]

In process (one thread): a short prompt's decision against the bare embedding of the same text,
the floor any embedding router pays. Over HTTP (concurrency 1): a decision against GET /healthz
on the same server, the floor of the HTTP stack. Plus the server's idle RSS and the time from
process start to the first answered decision.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from turnout.config import load_config
from turnout.routing.conversation import RoutingRequest, Turn
from turnout.routing.decision import RoutingService
from turnout.routing.embedded import EmbeddedRouter
from turnout.routing.embedder import Embedder

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "model_routing_service" / "config.yaml"
PROMPTS = [
    "Write a Python function for binary search",
    "Analyze the trade-offs between microservices and monolithic architecture",
    "hello!",
    "Create a REST API endpoint in Rust using actix-web",
    "What is the capital of France?",
]


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(samples_ms, q)) for q in (50, 95, 99)}


def unique_prompt(i: int, arm: str) -> str:
    """A prompt never seen before in this process: the embedder remembers texts it embedded."""
    return f"{PROMPTS[i % len(PROMPTS)]} ({arm} {i})"


def timed(fn, n: int) -> list[float]:
    samples = []
    for i in range(n):
        started = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def in_process(n: int) -> None:
    embedder = Embedder(threads=1)
    service = RoutingService(load_config(CONFIG), EmbeddedRouter(embedder))
    service.prepare()
    loop = asyncio.new_event_loop()

    def decide_one(request: RoutingRequest) -> None:
        loop.run_until_complete(service.decide(request))

    def decide_prompt(i: int) -> None:
        decide_one(RoutingRequest(None, (Turn("user", unique_prompt(i, "decide")),)))

    timed(decide_prompt, 20)
    decide = percentiles(timed(decide_prompt, n))
    embed = percentiles(timed(lambda i: embedder.embed([unique_prompt(i, "embed")]), n))
    print(f"in process, 1 thread, {n} decisions of short prompts")
    for key in decide:
        print(
            f"  {key}: decision {decide[key]:.2f} ms, bare embedding {embed[key]:.2f} ms, "
            f"ratio {decide[key] / embed[key]:.2f}"
        )
    words = "word " * 1_600_000

    def decide_huge(i: int) -> None:
        decide_one(RoutingRequest(None, (Turn("user", f"Summarize this ({i}):\n{words}"),)))

    largest = percentiles(timed(decide_huge, 10))
    print(f"  an 8 MB message, p50: {largest['p50']:.2f} ms")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def over_http(n: int) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    body = {"messages": [{"role": "user", "content": PROMPTS[0]}]}
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "turnout", "up", str(CONFIG), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            while True:
                try:
                    if client.post("/routing/v1/chat/completions", json=body).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.02)
            first_decision_s = time.perf_counter() - started
            time.sleep(1)
            idle_rss = rss_mb(server.pid)
            post = lambda i: client.post(
                "/routing/v1/chat/completions",
                json={"messages": [{"role": "user", "content": unique_prompt(i, "http")}]},
            )
            timed(post, 20)
            decide = percentiles(timed(post, n))
            health = percentiles(timed(lambda i: client.get("/healthz"), n))
        print(f"over HTTP, concurrency 1, {n} decisions")
        for key in decide:
            print(
                f"  {key}: decision {decide[key]:.2f} ms, GET /healthz {health[key]:.2f} ms, "
                f"difference {decide[key] - health[key]:.2f} ms"
            )
        print(f"first decision {first_decision_s:.2f} s after process start")
        print(f"idle RSS after start {idle_rss:.0f} MB")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=300)
    args = parser.parse_args()
    in_process(args.decisions)
    over_http(args.decisions)


if __name__ == "__main__":
    main()
