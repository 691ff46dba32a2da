"""The LLM router against a fake OpenAI-compatible router server (a vLLM stand-in) that records
each request and answers as told: the exact request, every reply, and every way it can fail."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from conftest import ServerThread, free_port
from fakes import FakeProvider, Fault, Reply
from test_llm_prompts import CONVERSATIONS, golden

from turnout.config import Config, parse_config
from turnout.providers.upstream import UpstreamPool
from turnout.routing.conversation import RoutingRequest, Turn
from turnout.routing.decision import Decision, RoutingService
from turnout.routing.embedded import EmbeddedRouter
from turnout.routing.llm import LlmRouter
from turnout.server.app import create_app

CODE_REQUEST = "Write a Python function that reverses a list"


def config_for(
    router_url: str,
    upstream_url: str = "http://127.0.0.1:9",
    router_model: str = "arch/Arch-Router",
    router_key: str | None = None,
) -> Config:
    key = f"\n    access_key: {router_key}" if router_key else ""
    return parse_config(
        f"""
version: v0.4.0
model_providers:
  - model: {router_model}
    base_url: {router_url}{key}
  - model: openai/gpt-4o-mini
    base_url: {upstream_url}
    access_key: test-key
  - model: openai/gpt-4o
    base_url: {upstream_url}
    access_key: test-key
overrides:
  llm_routing_model: {router_model}
routing:
  llm:
    timeout_seconds: 0.3
    failures_to_open: 2
    cooldown_seconds: 0.4
routing_preferences:
  - name: Image generation
    description: generating image
    models: [openai/gpt-4o-mini]
  - name: code_generation
    description: generating new code, writing functions, or creating boilerplate
    models: [openai/gpt-4o, openai/gpt-4o-mini]
""",
        env={},
    )


@pytest.fixture(scope="module")
def fake_router() -> Iterator[FakeProvider]:
    with FakeProvider("openai", api_key=None) as fake:
        yield fake


@pytest.fixture()
def router_server(fake_router: FakeProvider) -> FakeProvider:
    fake_router.clear()
    return fake_router


def ask(text: str) -> RoutingRequest:
    return RoutingRequest(model=None, turns=(Turn("user", text),))


def decide_each(
    config: Config, router: EmbeddedRouter, *requests: RoutingRequest, pause: float = 0.0
) -> list[Decision]:
    """Decisions in order on one service (one breaker), `pause` seconds apart."""

    async def run() -> list[Decision]:
        pool = UpstreamPool()
        service = RoutingService(config, router, LlmRouter(config, pool))
        try:
            decisions = []
            for request in requests:
                decisions.append(await service.decide(request))
                await asyncio.sleep(pause)
            return decisions
        finally:
            await pool.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("router_model", "prompt"),
    [("arch/Arch-Router", "arch_router_v1"), ("plano/Plano-Orchestrator", "plano_orchestrator_v1")],
)
def test_a_decision_sends_the_golden_prompt_to_the_router_model(
    router_server: FakeProvider, router: EmbeddedRouter, router_model: str, prompt: str
) -> None:
    router_server.queue(Reply('{"route": "Image generation"}'))
    config = config_for(router_server.url, router_model=router_model)
    pool = UpstreamPool()
    service = RoutingService(config, router, LlmRouter(config, pool))
    with (
        ServerThread(create_app(service, pool), free_port()) as gateway,
        httpx.Client(base_url=gateway.url, timeout=10) as client,
    ):
        response = client.post(
            "/routing/v1/chat/completions", json={"messages": CONVERSATIONS["multi_turn"]}
        )

    assert response.status_code == 200
    assert response.json()["route"] == "Image generation"
    assert response.json()["router"] == "llm"
    (sent,) = router_server.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.body == {
        "model": router_model.split("/")[1],
        "messages": [{"role": "user", "content": golden(f"{prompt}.multi_turn")}],
        "temperature": 0.01,
    }
    assert "authorization" not in sent.headers  # no access_key configured: none sent


def test_the_router_providers_key_is_sent_when_configured(router: EmbeddedRouter) -> None:
    with FakeProvider("openai", api_key="router-key") as fake:
        fake.queue(Reply('{"route": "code_generation"}'))
        config = config_for(fake.url, router_key="router-key")
        (decision,) = decide_each(config, router, ask(CODE_REQUEST))

    assert fake.requests[0].headers["authorization"] == "Bearer router-key"
    assert (decision.router, decision.route) == ("llm", "code_generation")


@pytest.mark.parametrize(
    ("reply", "route", "models"),
    [
        (
            '{"route": "code_generation"}',
            "code_generation",
            ["openai/gpt-4o", "openai/gpt-4o-mini"],
        ),
        (
            '```json\n{"route": ["Image generation"]}\n```',
            "Image generation",
            ["openai/gpt-4o-mini"],
        ),
        ('{"route": "other"}', None, ["openai/gpt-4o-mini"]),
        ('{"route": "travel_booking"}', None, ["openai/gpt-4o-mini"]),
        ("", None, ["openai/gpt-4o-mini"]),
    ],
)
def test_the_router_models_reply_is_the_decision(
    router_server: FakeProvider,
    router: EmbeddedRouter,
    reply: str,
    route: str | None,
    models: list[str],
) -> None:
    router_server.queue(Reply(reply))
    (decision,) = decide_each(config_for(router_server.url), router, ask("hello there"))
    assert (decision.router, decision.router_fallback) == ("llm", None)
    assert (decision.route, decision.models) == (route, models)


@pytest.mark.parametrize(
    ("outcome", "fallback"),
    [
        (Reply("I cannot help with routing today."), "invalid_reply"),
        (Reply('{"route": 42}'), "invalid_reply"),
        (Reply('{"route": "code_generation"}', delay=5), "timeout"),
        (Fault(500), "error"),
        (Fault(503, message="model is loading"), "error"),
        (Fault(kind="garbage"), "error"),
        (Fault(kind="reset"), "error"),
    ],
)
def test_when_the_router_fails_the_embedded_router_decides_and_says_why(
    router_server: FakeProvider, router: EmbeddedRouter, outcome: Reply | Fault, fallback: str
) -> None:
    router_server.queue(outcome)
    (decision,) = decide_each(config_for(router_server.url), router, ask(CODE_REQUEST))
    assert (decision.router, decision.router_fallback) == ("embedded", fallback)
    assert decision.route == "code_generation"  # the embedded router's own decision
    assert decision.models == ["openai/gpt-4o", "openai/gpt-4o-mini"]


def test_a_router_that_is_down_costs_no_more_than_a_failed_connection(
    router: EmbeddedRouter,
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    (decision,) = decide_each(config_for(down), router, ask(CODE_REQUEST))
    assert (decision.router, decision.router_fallback, decision.route) == (
        "embedded",
        "error",
        "code_generation",
    )


def test_repeated_failures_open_the_circuit_then_a_probe_closes_it(
    router_server: FakeProvider, router: EmbeddedRouter
) -> None:
    # failures_to_open 2, cooldown 0.4 s; decisions 0.25 s apart.
    router_server.queue(Fault(500), Fault(500), Reply('{"route": "code_generation"}'))
    decisions = decide_each(
        config_for(router_server.url), router, *[ask(CODE_REQUEST)] * 5, pause=0.25
    )
    assert [d.router_fallback for d in decisions] == [
        "error",
        "error",
        "circuit_open",  # 0.25 s after opening: the router is not asked
        None,  # 0.5 s after opening: the probe, answered, closes the circuit
        None,
    ]
    assert len(router_server.requests) == 4
    assert decisions[3].router == decisions[4].router == "llm"


def test_inline_routes_are_sent_to_the_router_model(
    router_server: FakeProvider, router: EmbeddedRouter
) -> None:
    router_server.queue(Reply('{"route": ["translate"]}'))
    inline = [{"name": "translate", "description": "translating text", "models": ["openai/gpt-4o"]}]
    request = RoutingRequest(None, (Turn("user", "say hi in French"),), inline)
    (decision,) = decide_each(config_for(router_server.url), router, request)
    assert (decision.route, decision.models) == ("translate", ["openai/gpt-4o"])
    prompt = router_server.requests[0].body["messages"][0]["content"]
    assert '{"name":"translate","description":"translating text"}' in prompt
    assert "code_generation" not in prompt


def test_the_router_model_is_never_the_implicit_default() -> None:
    config = config_for("http://127.0.0.1:9")
    assert config.model_providers[0].model == "arch/Arch-Router"
    assert config.default_model == "openai/gpt-4o-mini"


def test_the_gateway_proxies_to_the_route_the_router_model_chose_and_reports_readiness(
    router_server: FakeProvider, router: EmbeddedRouter
) -> None:
    with FakeProvider("openai") as upstream:
        config = config_for(router_server.url, upstream.url)
        pool = UpstreamPool()
        service = RoutingService(config, router, LlmRouter(config, pool))
        service.prepare()
        with (
            ServerThread(create_app(service, pool), free_port()) as gateway,
            httpx.Client(base_url=gateway.url, timeout=10) as client,
        ):
            router_server.queue(Reply('{"route": "Image generation"}'))
            routed = client.post(
                "/v1/chat/completions",
                json={
                    "model": "gpt-4o",
                    "messages": [{"role": "user", "content": "a cat, pixel art"}],
                },
            )
            router_server.queue(Fault(500), Fault(500))
            client.post(
                "/routing/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "x"}]},
            )
            fallen_back = client.post(
                "/v1/chat/completions",
                json={
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": CODE_REQUEST}],
                },
            )
            ready = client.get("/readyz")
            health = client.get("/healthz")

    assert routed.status_code == 200
    assert upstream.requests[0].body["model"] == "gpt-4o-mini"  # Image generation's model
    assert routed.headers["x-turnout-route"] == "Image generation"
    assert routed.headers["x-turnout-router"] == "llm"
    assert "x-turnout-router-confidence" not in routed.headers  # the embedded router never ran
    assert fallen_back.status_code == 200
    assert fallen_back.headers["x-turnout-router"] == "embedded"
    assert 0 < float(fallen_back.headers["x-turnout-router-confidence"]) < 1
    assert fallen_back.headers["x-turnout-router-fallback"] == "error"
    assert fallen_back.headers["x-turnout-route"] == "code_generation"
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["llm_router"] == {"model": "arch/Arch-Router", "circuit": "open"}
    assert health.json()["router"] == "llm"
