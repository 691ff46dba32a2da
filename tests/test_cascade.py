"""The cascade (`routing.cascade.min_confidence`): the embedded router decides first, and the LLM
router, a fake OpenAI-compatible server that counts its calls, is asked only below the bar."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from conftest import ServerThread, free_port
from fakes import FakeProvider, Fault, Reply

from turnout.config import Config, parse_config
from turnout.providers.upstream import UpstreamPool
from turnout.routing.conversation import RoutingRequest, Turn
from turnout.routing.decision import Decision, RoutingService
from turnout.routing.embedded import EmbeddedRouter
from turnout.routing.llm import LlmRouter
from turnout.server.app import create_app

CLEAR_CODE = "write a python function that reverses a linked list"  # embedded: code, ~0.73
AMBIGUOUS = "put this into a nicer form"  # embedded: code and poetry tie, ~0.39
GREETING = "hello there"
THRESHOLD = 0.6  # between the two texts below (about 0.70 and 0.51)
POETRY = '{"route": "poetry"}'
CODE = '{"route": "code"}'


def config_for(
    router_url: str,
    min_confidence: float | None,
    no_route_examples: Sequence[str] = (),
    code_examples: Sequence[str] = (),
) -> Config:
    cascade = (
        "" if min_confidence is None else f"\n  cascade:\n    min_confidence: {min_confidence}"
    )
    return parse_config(
        f"""
version: v0.4.0
model_providers:
  - model: arch/Arch-Router
    base_url: {router_url}
  - model: openai/gpt-4o-mini
    base_url: http://127.0.0.1:9
    access_key: test-key
  - model: openai/gpt-4o
    base_url: http://127.0.0.1:9
    access_key: test-key
  - model: anthropic/claude-haiku-4-5
    base_url: http://127.0.0.1:9
    access_key: test-key
overrides:
  llm_routing_model: arch/Arch-Router
routing:
  llm:
    timeout_seconds: 2
    failures_to_open: 50
  no_route_examples: {json.dumps(list(no_route_examples))}{cascade}
routing_preferences:
  - name: code
    description: "programming: writing functions, scripts and classes in any language"
    examples: {json.dumps(list(code_examples))}
    models: [openai/gpt-4o]
  - name: poetry
    description: "writing poetry: poems, haiku, limericks"
    models: [anthropic/claude-haiku-4-5]
""",
        env={},
    )


def ask(text: str) -> RoutingRequest:
    return RoutingRequest(model=None, turns=(Turn("user", text),))


def decide_each(config: Config, router: EmbeddedRouter, *texts: str) -> list[Decision]:
    """Decisions in order on one service, as a gateway makes them."""

    async def run() -> list[Decision]:
        pool = UpstreamPool()
        service = RoutingService(config, router, LlmRouter(config, pool))
        try:
            return [await service.decide(ask(text)) for text in texts]
        finally:
            await pool.aclose()

    return asyncio.run(run())


def embedded_confidence(router: EmbeddedRouter, config: Config, text: str) -> float | None:
    classification = router.classify(
        [Turn("user", text)], config.routing_preferences, config.routing.no_route_examples
    )
    return classification.confidence


@pytest.fixture(scope="module")
def fake_router() -> Iterator[FakeProvider]:
    with FakeProvider("openai", api_key=None) as fake:
        yield fake


@pytest.fixture()
def llm(fake_router: FakeProvider) -> FakeProvider:
    fake_router.clear()
    return fake_router


@pytest.fixture()
def classify_calls(router: EmbeddedRouter, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The latest user text of every embedded classification made during the test."""
    calls: list[str] = []
    classify = router.classify

    def counting(turns: Sequence[Turn], *args: Any) -> Any:
        calls.append(turns[-1].text)
        return classify(turns, *args)

    monkeypatch.setattr(router, "classify", counting)
    return calls


def test_the_texts_straddle_the_threshold(router: EmbeddedRouter) -> None:
    """The other tests rely on these confidences; if the embedder changes, pick new texts."""
    config = config_for("http://127.0.0.1:9", THRESHOLD)
    clear = embedded_confidence(router, config, CLEAR_CODE)
    ambiguous = embedded_confidence(router, config, AMBIGUOUS)
    assert clear is not None and ambiguous is not None
    assert clear >= THRESHOLD + 0.05
    assert ambiguous < THRESHOLD - 0.05


def test_min_confidence_0_never_asks_the_llm_router(
    llm: FakeProvider, router: EmbeddedRouter
) -> None:
    llm.queue(Reply(POETRY), Reply(POETRY), Reply(POETRY))

    decisions = decide_each(config_for(llm.url, 0), router, CLEAR_CODE, AMBIGUOUS, GREETING)

    assert llm.requests == []
    assert [d.router for d in decisions] == ["embedded"] * 3
    assert [d.escalated for d in decisions] == [False] * 3
    assert [d.router_fallback for d in decisions] == [None] * 3
    assert decisions[0].route == "code"
    assert all(d.confidence is not None for d in decisions)


def test_min_confidence_1_asks_the_llm_router_for_every_decision_and_it_decides(
    llm: FakeProvider, router: EmbeddedRouter
) -> None:
    llm.queue(Reply(POETRY), Reply(POETRY), Reply(POETRY))
    config = config_for(llm.url, 1)

    decisions = decide_each(config, router, CLEAR_CODE, AMBIGUOUS, GREETING)

    assert len(llm.requests) == 3
    assert [(d.router, d.route, d.escalated) for d in decisions] == [("llm", "poetry", True)] * 3
    assert [d.models for d in decisions] == [["anthropic/claude-haiku-4-5"]] * 3
    assert [d.router_fallback for d in decisions] == [None] * 3
    # The confidence reported is the embedded router's, the reason the LLM router was asked.
    assert [d.confidence for d in decisions] == [
        embedded_confidence(router, config, text) for text in (CLEAR_CODE, AMBIGUOUS, GREETING)
    ]


def test_min_confidence_1_escalates_even_a_copy_of_a_route_example(
    llm: FakeProvider, router: EmbeddedRouter
) -> None:
    """`min_confidence: 1` means "always ask the LLM router", also for the surest decisions
    (a request that repeats a route's example is about as sure as the embedded router gets)."""
    llm.queue(Reply(POETRY))
    config = config_for(llm.url, 1, code_examples=[CLEAR_CODE])

    (decision,) = decide_each(config, router, CLEAR_CODE)

    assert len(llm.requests) == 1
    assert (decision.router, decision.route, decision.escalated) == ("llm", "poetry", True)


@pytest.mark.parametrize("failure", ["refused", "http_500"])
def test_when_the_llm_router_fails_the_embedded_decision_already_made_stands(
    llm: FakeProvider,
    router: EmbeddedRouter,
    classify_calls: list[str],
    failure: str,
) -> None:
    if failure == "refused":
        url = f"http://127.0.0.1:{free_port()}"
    else:
        url = llm.url
        llm.queue(Fault(500))
    config = config_for(url, 1)
    expected = embedded_confidence(router, config, CLEAR_CODE)
    classify_calls.clear()

    (decision,) = decide_each(config, router, CLEAR_CODE)

    assert (decision.router, decision.route, decision.router_fallback) == (
        "embedded",
        "code",
        "error",
    )
    assert decision.escalated is True
    assert decision.models == ["openai/gpt-4o"]
    assert decision.confidence == expected
    assert classify_calls == [CLEAR_CODE]  # classified once, before escalating; not again


def test_between_0_and_1_only_unsure_decisions_are_escalated(
    llm: FakeProvider, router: EmbeddedRouter
) -> None:
    llm.queue(Reply(CODE))

    sure, unsure = decide_each(config_for(llm.url, THRESHOLD), router, CLEAR_CODE, AMBIGUOUS)

    assert (sure.router, sure.route, sure.escalated) == ("embedded", "code", False)
    assert sure.confidence is not None and sure.confidence >= THRESHOLD
    assert (unsure.router, unsure.route, unsure.escalated) == ("llm", "code", True)
    assert unsure.confidence is not None and unsure.confidence < THRESHOLD
    (sent,) = llm.requests  # the unsure request only
    assert AMBIGUOUS in sent.body["messages"][0]["content"]


def test_without_a_cascade_the_llm_router_is_asked_for_every_decision(
    llm: FakeProvider, router: EmbeddedRouter, classify_calls: list[str]
) -> None:
    llm.queue(Reply(POETRY), Reply(POETRY))

    decisions = decide_each(config_for(llm.url, None), router, CLEAR_CODE, GREETING)

    assert len(llm.requests) == 2
    assert [(d.router, d.route, d.escalated) for d in decisions] == [("llm", "poetry", False)] * 2
    assert classify_calls == []  # the embedded router runs only when the LLM router gives nothing


def test_a_request_declined_by_a_no_route_example_stays_declined_in_a_cascade(
    llm: FakeProvider, router: EmbeddedRouter
) -> None:
    """`routing.no_route_examples` are requests that must get no route; the LLM router never sees
    them, so a cascade must not hand such a request to it to be routed."""
    config = config_for(
        llm.url, THRESHOLD, no_route_examples=["write a limerick that makes fun of my manager"]
    )
    request = "write a limerick mocking my boss"
    zero_shot = config_for(llm.url, 0)
    assert decide_each(zero_shot, router, request)[0].route == "poetry"  # without the example
    llm.queue(Reply(POETRY))

    (decision,) = decide_each(config, router, request)

    assert decision.route is None


# --- over HTTP -----------------------------------------------------------------------------


@pytest.fixture()
def gateway_for(router: EmbeddedRouter) -> Iterator[Any]:
    """A function that starts a real gateway on a config; every one is stopped after the test."""
    servers: list[tuple[ServerThread, httpx.Client]] = []

    def start(config: Config) -> httpx.Client:
        pool = UpstreamPool()
        service = RoutingService(config, router, LlmRouter(config, pool))
        service.prepare()
        server = ServerThread(create_app(service, pool), free_port()).__enter__()
        client = httpx.Client(base_url=server.url, timeout=10)
        servers.append((server, client))
        return client

    yield start
    for server, client in servers:
        client.close()
        server.__exit__(None, None, None)


def route(client: httpx.Client, text: str) -> dict[str, Any]:
    response = client.post(
        "/routing/v1/chat/completions", json={"messages": [{"role": "user", "content": text}]}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_the_decision_api_says_when_a_decision_was_escalated(
    llm: FakeProvider, router: EmbeddedRouter, gateway_for: Any
) -> None:
    client = gateway_for(config_for(llm.url, THRESHOLD))
    llm.queue(Reply(POETRY), Fault(500))

    sure = route(client, CLEAR_CODE)
    escalated = route(client, AMBIGUOUS)
    fallen_back = route(client, AMBIGUOUS)

    assert (sure["router"], sure["route"]) == ("embedded", "code")
    assert "escalated" not in sure and "router_fallback" not in sure
    assert 0 <= sure["confidence"] <= 1
    assert (escalated["router"], escalated["route"], escalated["escalated"]) == (
        "llm",
        "poetry",
        True,
    )
    assert escalated["models"] == ["anthropic/claude-haiku-4-5"]
    assert escalated["confidence"] < THRESHOLD
    assert (fallen_back["router"], fallen_back["router_fallback"], fallen_back["escalated"]) == (
        "embedded",
        "error",
        True,
    )
    assert fallen_back["confidence"] == escalated["confidence"]
    assert len(llm.requests) == 2


def test_without_a_cascade_the_decision_api_never_says_escalated(
    llm: FakeProvider, gateway_for: Any
) -> None:
    client = gateway_for(config_for(llm.url, None))
    llm.queue(Reply(POETRY))

    decision = route(client, AMBIGUOUS)

    assert (decision["router"], decision["route"]) == ("llm", "poetry")
    assert "escalated" not in decision


def test_escalations_are_counted_in_the_metrics(llm: FakeProvider, gateway_for: Any) -> None:
    """docs/routing.md: the `turnout_router_escalations_total` metric counts escalations."""
    client = gateway_for(config_for(llm.url, THRESHOLD))
    llm.queue(Reply(POETRY))
    route(client, CLEAR_CODE)
    route(client, AMBIGUOUS)

    metrics = client.get("/metrics").text

    samples = [
        line for line in metrics.splitlines() if line.startswith("turnout_router_escalations_total")
    ]
    assert samples, "no turnout_router_escalations_total in /metrics"
    assert sum(float(line.rsplit(" ", 1)[1]) for line in samples) == 1.0
