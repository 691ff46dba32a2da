"""What the guardrails cost a short request, against the same request with none, in one process.

    python bench/guardrails/guard_cost.py [-n 300]

Each iteration runs the governance stage and the routing decision, as the gateway does before
calling a provider: once with every guard on (PII redaction, prompt-injection detection, size
limits, a client key), once with none, alternating, each time on a new short prompt (so no
embedding is reused across iterations; within one request the router reuses the guard's). Then
the output side: PII redaction of a 600-character answer, whole and as a 40-event stream.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from pathlib import Path

import numpy as np

from turnout.apis import API_FORMATS
from turnout.apis.response_text import StreamTextEditor, map_body_texts
from turnout.config import Config, parse_config
from turnout.governance.gate import Gate, build_gate
from turnout.providers.upstream import UpstreamPool
from turnout.routing.decision import RoutingService
from turnout.routing.embedded import EmbeddedRouter
from turnout.routing.embedder import Embedder

DEMO = Path(__file__).resolve().parents[2] / "examples" / "model_routing_service" / "config.yaml"
KEY = "tk-bench-0123456789abcdef"
GUARDS = """
governance:
  client_keys:
    - name: bench
      key: $BENCH_KEY
  guardrails:
    pii: {action: redact}
    prompt_injection: {action: block}
    size: {max_input_tokens: 100000, max_messages: 500}
"""
PROMPTS = [
    "Write a Python function that checks whether a string is a palindrome",
    "Explain step by step why the sky looks blue at noon and red at sunset",
    "Draft a short email to my team moving Friday's meeting to Monday",
    "What's a good name for a bakery that sells sourdough?",
]
ANSWER = (
    "Thanks for reaching out! I've looked at your account and everything is in order. "
    "If you need anything else, write to support.team@example.com or call +1 415 555 0134. "
) * 3


def config(with_guards: bool) -> Config:
    text = DEMO.read_text() + (GUARDS if with_guards else "")
    return parse_config(
        text, env={"OPENAI_API_KEY": "x", "ANTHROPIC_API_KEY": "x", "BENCH_KEY": KEY}
    )


async def once(gate: Gate, service: RoutingService, text: str) -> float:
    api = API_FORMATS["openai_chat"]
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    started = time.perf_counter()
    request = api.parse_routing_request(body)
    admitted = await gate.admit(
        {"authorization": f"Bearer {KEY}"}, api.name, body, request.turns, {}
    )
    decision = await service.decide(request)
    gate.allowed(admitted, decision, None)
    return (time.perf_counter() - started) * 1000


def p50(samples: list[float]) -> float:
    return float(np.percentile(samples, 50))


async def main(n: int) -> None:
    logging.basicConfig(level=logging.ERROR)
    embedder = Embedder()
    router = EmbeddedRouter(embedder)
    arms = {}
    for name, guarded in (("guards on", True), ("no guards", False)):
        cfg = config(guarded)
        service = RoutingService(cfg, router)
        service.prepare()
        arms[name] = (build_gate(cfg, embedder, UpstreamPool()), service)
    samples: dict[str, list[float]] = {name: [] for name in arms}
    for i in range(n + 20):
        for name, (gate, service) in arms.items():
            text = f"{PROMPTS[i % len(PROMPTS)]} (request {i} {name})"
            elapsed = await once(gate, service, text)
            if i >= 20:
                samples[name].append(elapsed)
    on, off = p50(samples["guards on"]), p50(samples["no guards"])
    print(f"{n} short requests, governance stage + routing decision, p50:")
    print(
        f"  no guards {off:.2f} ms, guards on {on:.2f} ms: guards add {on - off:.2f} ms (ratio {on / off:.2f})"
    )
    print(
        f"  p95: no guards {np.percentile(samples['no guards'], 95):.2f} ms, guards on {np.percentile(samples['guards on'], 95):.2f} ms"
    )

    gate = arms["guards on"][0]
    edit = gate.guards.text_edit([])
    assert edit is not None
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}}]}
    whole = []
    for _ in range(n):
        started = time.perf_counter()
        map_body_texts("openai_chat", body, edit)
        whole.append((time.perf_counter() - started) * 1000)
    pieces = [ANSWER[i : i + 15] for i in range(0, len(ANSWER), 15)]
    events = [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    streamed = []
    for _ in range(n):
        editor = StreamTextEditor("openai_chat", gate.guards.stream_editor([]))
        started = time.perf_counter()
        for event in events:
            editor.event(None, event)
        editor.finish()
        streamed.append((time.perf_counter() - started) * 1000)
    print(
        f"output PII redaction of a {len(ANSWER)}-character answer, p50: whole {p50(whole):.3f} ms, "
        f"streamed in {len(events)} events {p50(streamed):.3f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=300)
    asyncio.run(main(parser.parse_args().n))
