"""From a classification to the models a client should try, in order."""

from __future__ import annotations

import asyncio

import pytest

from turnout.apis.errors import RequestError
from turnout.config import parse_config
from turnout.routing.conversation import RoutingRequest, Turn
from turnout.routing.decision import Decision, RoutingService
from turnout.routing.embedded import EmbeddedRouter

CONFIG = """
version: v0.4.0
model_providers:
  - model: openai/gpt-4o-mini
    default: true
  - model: openai/gpt-4o
  - model: anthropic/claude-sonnet-4-20250514
model_aliases:
  smart:
    target: openai/gpt-4o
routing_preferences:
  - name: code_generation
    description: generating new code, writing functions, or creating boilerplate
    models: [smart, anthropic/claude-sonnet-4-20250514]
"""


@pytest.fixture(scope="module")
def service(router: EmbeddedRouter) -> RoutingService:
    return RoutingService(parse_config(CONFIG, env={}), router)


def request(text: str, model: str | None = None, prefs: list | None = None) -> RoutingRequest:
    return RoutingRequest(model=model, turns=(Turn("user", text),), routing_preferences=prefs)


def decide(service: RoutingService, routing_request: RoutingRequest) -> Decision:
    return asyncio.run(service.decide(routing_request))


def test_a_route_answers_its_models_with_aliases_resolved(service: RoutingService) -> None:
    decision = decide(service, request("Write a Python function that reverses a list"))
    assert decision.route == "code_generation"
    assert decision.models == ["openai/gpt-4o", "anthropic/claude-sonnet-4-20250514"]
    assert decision.router == "embedded" and decision.latency_ms > 0


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("anthropic/claude-sonnet-4-20250514", "anthropic/claude-sonnet-4-20250514"),
        ("gpt-4o", "openai/gpt-4o"),
        ("smart", "openai/gpt-4o"),
        ("unknown/model", "openai/gpt-4o-mini"),
        (None, "openai/gpt-4o-mini"),
    ],
)
def test_no_route_answers_the_requests_model_or_the_default(
    service: RoutingService, model: str | None, expected: str
) -> None:
    decision = decide(service, request("hello there!", model))
    assert decision.route is None
    assert decision.models == [expected]


def test_inline_preferences_replace_the_configured_routes(service: RoutingService) -> None:
    prefs = [
        {
            "name": "translate",
            "description": "translating text between languages",
            "models": ["x/y"],
        }
    ]
    decision = decide(service, request("Translate 'good morning' into Italian", prefs=prefs))
    assert (decision.route, decision.models) == ("translate", ["x/y"])


@pytest.mark.parametrize(
    "prefs",
    [
        [{"name": "a", "description": "d", "models": []}],
        [
            {"name": "a", "description": "d", "models": ["m"]},
            {"name": "a", "description": "e", "models": ["m"]},
        ],
        ["not an object"],
        [{"description": "no name", "models": ["m"]}],
    ],
)
def test_invalid_inline_preferences_are_a_request_error(
    service: RoutingService, prefs: list
) -> None:
    with pytest.raises(RequestError) as caught:
        decide(service, request("hi", prefs=prefs))
    assert caught.value.status == 400
    assert caught.value.param and caught.value.param.startswith("routing_preferences")


def test_inline_preferences_are_bounded_so_one_body_cannot_stall_the_router(
    service: RoutingService,
) -> None:
    many_routes = [{"name": f"r{i}", "description": "d", "models": ["m"]} for i in range(65)]
    with pytest.raises(RequestError, match="at most 64 routes"):
        decide(service, request("hi", prefs=many_routes))
    many_examples = [{"name": "r", "description": "d", "models": ["m"], "examples": ["e"] * 1001}]
    with pytest.raises(RequestError, match="at most 1000 examples"):
        decide(service, request("hi", prefs=many_examples))
