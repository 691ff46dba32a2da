"""Route evidence beyond descriptions: no-route examples (config and inline), routes known by
their examples, examples swapped in at run time, and the embedded router's confidence."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from conftest import ServerThread, free_port
from fakes import FakeProvider

from turnout.apis.errors import RequestError
from turnout.config import Config, parse_config
from turnout.routing.conversation import RoutingRequest, Turn
from turnout.routing.decision import MAX_INLINE_EXAMPLES, Decision, RoutingService
from turnout.routing.embedded import EmbeddedRouter
from turnout.routing.examples import RouteExamples
from turnout.server.app import create_app

KEY = "test-key"
CONTRACT = "Translate my employment contract into German"  # zero-shot: translation
CONTRACT_PARAPHRASE = "please translate my work contract to German"
GREETING_TRANSLATION = "Translate 'good morning' into Italian"
WEATHER = "Will it rain in Madrid tomorrow?"
WEATHER_EXAMPLES = [
    "will it rain in Paris tomorrow?",
    "weather forecast for Berlin this weekend",
    "is it going to be sunny on Saturday",
]
UNRELATED = "questions about invoices, refunds and payments"
CLEAR_CODE = "write a python function that reverses a linked list"
AMBIGUOUS = "put this into a nicer form"  # code and poetry score within 0.01 of each other
CODE_AND_POETRY = [
    {
        "name": "code",
        "description": "programming: writing functions, scripts and classes in any language",
        "models": ["openai/gpt-4o"],
    },
    {
        "name": "poetry",
        "description": "writing poetry: poems, haiku, limericks",
        "models": ["openai/gpt-4o-mini"],
    },
]


def config_with(
    no_route_examples: Sequence[str] = (),
    openai_url: str = "http://127.0.0.1:9",
    anthropic_url: str = "http://127.0.0.1:9",
    extra_routes: Sequence[dict[str, Any]] = (),
) -> Config:
    routes = [
        {
            "name": "code_generation",
            "description": "generating new code, writing functions, scripts or classes",
            "models": ["openai/gpt-4o"],
        },
        {
            "name": "translation",
            "description": "translating text between languages",
            "models": ["openai/gpt-4o"],
        },
        *extra_routes,
    ]
    return parse_config(
        f"""
version: v0.4.0
model_providers:
  - model: openai/gpt-4o-mini
    base_url: {openai_url}
    access_key: {KEY}
    default: true
  - model: openai/gpt-4o
    base_url: {openai_url}
    access_key: {KEY}
  - model: anthropic/claude-haiku-4-5
    base_url: {anthropic_url}
    access_key: {KEY}
routing_preferences: {json.dumps(routes)}
routing:
  no_route_examples: {json.dumps(list(no_route_examples))}
""",
        env={},
    )


def ask(
    text: str,
    *,
    no_route: list[str] | None = None,
    prefs: list[Any] | None = None,
    model: str | None = None,
) -> RoutingRequest:
    return RoutingRequest(model, (Turn("user", text),), prefs, no_route)


def decide(service: RoutingService, request: RoutingRequest) -> Decision:
    return asyncio.run(service.decide(request))


def chat(text: str, **fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **fields}


@pytest.fixture(scope="module")
def zero_shot(router: EmbeddedRouter) -> RoutingService:
    service = RoutingService(config_with(), router)
    service.prepare()
    return service


@pytest.fixture(scope="module")
def declining(router: EmbeddedRouter) -> RoutingService:
    """The same routes, with the contract paraphrase as a configured no-route example."""
    service = RoutingService(config_with([CONTRACT_PARAPHRASE]), router)
    service.prepare()
    return service


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FakeProvider, FakeProvider]]:
    with FakeProvider("openai", api_key=KEY) as oa, FakeProvider("anthropic", api_key=KEY) as an:
        yield oa, an


@pytest.fixture(scope="module")
def gateway(
    upstreams: tuple[FakeProvider, FakeProvider], router: EmbeddedRouter
) -> Iterator[httpx.Client]:
    """A real app on the zero-shot config (no configured no-route examples)."""
    oa, an = upstreams
    service = RoutingService(config_with(openai_url=oa.url, anthropic_url=an.url), router)
    service.prepare()
    with (
        ServerThread(create_app(service), free_port()) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield client


@pytest.fixture()
def cleared(upstreams: tuple[FakeProvider, FakeProvider]) -> tuple[FakeProvider, FakeProvider]:
    for fake in upstreams:
        fake.clear()
    return upstreams


# --- no-route examples ---------------------------------------------------------------------


def test_a_configured_no_route_example_takes_its_paraphrase_out_of_the_route(
    zero_shot: RoutingService, declining: RoutingService
) -> None:
    assert decide(zero_shot, ask(CONTRACT)).route == "translation"

    declined = decide(declining, ask(CONTRACT))

    assert declined.route is None
    assert declined.models == ["openai/gpt-4o-mini"]  # the default, as for any no-route request
    assert "no-route example" in declined.reason
    # Only requests like the example are declined: the route still serves the rest.
    assert decide(declining, ask(GREETING_TRANSLATION)).route == "translation"


@pytest.mark.parametrize(
    ("no_route_examples", "text", "route"),
    [
        # each text is closer to its route's best evidence than to any no-route example
        (["what's the capital of France?"], "translate the paris travel guide into german", "translation"),
        (["what's the capital of France?"], "write a function that returns the capital of a country", "code_generation"),
        (["tell me a joke about cats"], "write a joke generator in python", "code_generation"),
        ([CONTRACT_PARAPHRASE, "please translate the restaurant menu to French"], GREETING_TRANSLATION, "translation"),
    ],
)  # fmt: skip
def test_no_route_examples_about_other_requests_do_not_decline_a_clear_task(
    router: EmbeddedRouter, no_route_examples: list[str], text: str, route: str
) -> None:
    """An operator who declines some requests still wants the tasks that merely share a word
    or a language with them routed."""
    assert decide(RoutingService(config_with(), router), ask(text)).route == route
    service = RoutingService(config_with(no_route_examples), router)

    assert decide(service, ask(text)).route == route


def test_inline_no_route_examples_add_to_the_configured_ones(declining: RoutingService) -> None:
    other = "Translate the dinner menu of my restaurant into French"
    assert decide(declining, ask(other)).route == "translation"

    inline = ["please translate the restaurant menu to French"]
    assert decide(declining, ask(other, no_route=inline)).route is None
    assert decide(declining, ask(CONTRACT, no_route=inline)).route is None  # config's still apply


def test_inline_no_route_examples_apply_to_inline_routes(zero_shot: RoutingService) -> None:
    prefs = [{"name": "translate", "description": "translating text", "models": ["x/y"]}]
    assert decide(zero_shot, ask(CONTRACT, prefs=prefs)).route == "translate"

    declined = decide(zero_shot, ask(CONTRACT, prefs=prefs, no_route=[CONTRACT_PARAPHRASE]))

    assert declined.route is None


def test_the_decision_api_reads_inline_no_route_examples(gateway: httpx.Client) -> None:
    routed = gateway.post("/routing/v1/chat/completions", json=chat(CONTRACT))
    declined = gateway.post(
        "/routing/v1/chat/completions",
        json=chat(CONTRACT, no_route_examples=[CONTRACT_PARAPHRASE]),
    )

    assert routed.status_code == declined.status_code == 200
    assert (routed.json()["route"], routed.json()["models"]) == ("translation", ["openai/gpt-4o"])
    assert (declined.json()["route"], declined.json()["models"]) == (None, ["openai/gpt-4o-mini"])
    assert declined.json()["router"] == "embedded"


def test_the_proxy_routes_with_inline_no_route_examples_and_never_forwards_them(
    gateway: httpx.Client, cleared: tuple[FakeProvider, FakeProvider]
) -> None:
    oa, _ = cleared
    routed = gateway.post("/v1/chat/completions", json=chat(CONTRACT, model="gpt-4o-mini"))
    declined = gateway.post(
        "/v1/chat/completions",
        json=chat(
            CONTRACT, model="gpt-4o-mini", temperature=0.2, no_route_examples=[CONTRACT_PARAPHRASE]
        ),
    )

    assert routed.status_code == declined.status_code == 200
    assert routed.headers["x-turnout-route"] == "translation"
    assert "x-turnout-route" not in declined.headers
    first, second = oa.requests
    assert first.body["model"] == "gpt-4o"  # translation's model
    assert second.body["model"] == "gpt-4o-mini"  # no route: the client's own model
    assert "no_route_examples" not in second.body
    assert second.body["temperature"] == 0.2  # the client's other fields still go upstream


def test_the_messages_proxy_never_forwards_no_route_examples(
    gateway: httpx.Client, cleared: tuple[FakeProvider, FakeProvider]
) -> None:
    _, an = cleared
    response = gateway.post(
        "/v1/messages",
        json=chat(
            CONTRACT,
            model="anthropic/claude-haiku-4-5",
            max_tokens=64,
            no_route_examples=[CONTRACT_PARAPHRASE],
        ),
        headers={"anthropic-version": "2023-06-01"},
    )

    assert response.status_code == 200, response.text
    (sent,) = an.requests
    assert sent.body["model"] == "claude-haiku-4-5"
    assert "no_route_examples" not in sent.body
    assert sent.body["max_tokens"] == 64


# --- routes known by their examples --------------------------------------------------------


@pytest.mark.parametrize("description", [UNRELATED, ""])
def test_a_route_known_only_by_its_examples_wins_their_paraphrase(
    router: EmbeddedRouter, description: str
) -> None:
    route = {
        "name": "queue_7",
        "description": description,
        "examples": WEATHER_EXAMPLES,
        "models": ["anthropic/claude-haiku-4-5"],
    }
    service = RoutingService(config_with(extra_routes=[route]), router)

    decision = decide(service, ask(WEATHER))

    assert decision.route == "queue_7"
    assert decision.models == ["anthropic/claude-haiku-4-5"]


def test_without_its_examples_an_unrelated_description_does_not_win(
    router: EmbeddedRouter,
) -> None:
    route = {"name": "queue_7", "description": UNRELATED, "models": ["anthropic/claude-haiku-4-5"]}
    service = RoutingService(config_with(extra_routes=[route]), router)
    assert decide(service, ask(WEATHER)).route is None


# --- examples swapped in at run time -------------------------------------------------------


@pytest.fixture()
def swappable(router: EmbeddedRouter) -> RoutingService:
    route = {"name": "queue_7", "description": UNRELATED, "models": ["anthropic/claude-haiku-4-5"]}
    return RoutingService(config_with(extra_routes=[route]), router)


def test_use_examples_swaps_examples_in_and_out(swappable: RoutingService) -> None:
    assert decide(swappable, ask(WEATHER)).route is None

    swappable.use_examples(RouteExamples(routes={"queue_7": tuple(WEATHER_EXAMPLES)}))
    assert decide(swappable, ask(WEATHER)).route == "queue_7"
    assert decide(swappable, ask(CONTRACT)).route == "translation"  # other routes unchanged

    swappable.use_examples(RouteExamples())  # a new set replaces the last, it does not add
    assert decide(swappable, ask(WEATHER)).route is None


def test_use_examples_ignores_examples_of_routes_that_do_not_exist(
    swappable: RoutingService,
) -> None:
    before = decide(swappable, ask(WEATHER))

    swappable.use_examples(RouteExamples(routes={"weather": tuple(WEATHER_EXAMPLES)}))
    after = decide(swappable, ask(WEATHER))

    assert [r.name for r in swappable.route_set.routes] == [
        "code_generation",
        "translation",
        "queue_7",
    ]
    assert all(route.examples == [] for route in swappable.route_set.routes)
    assert after.route is None
    assert (after.scores, after.confidence) == (before.scores, before.confidence)


def test_use_examples_brings_no_route_examples_and_keeps_the_configured_ones(
    router: EmbeddedRouter,
) -> None:
    service = RoutingService(config_with([CONTRACT_PARAPHRASE]), router)
    menu = "Translate the dinner menu of my restaurant into French"
    assert decide(service, ask(menu)).route == "translation"

    service.use_examples(
        RouteExamples(no_route=("please translate the restaurant menu to French",))
    )

    assert decide(service, ask(menu)).route is None
    assert decide(service, ask(CONTRACT)).route is None
    assert decide(service, ask("How do you say thank you in Japanese?")).route == "translation"


# --- confidence ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "turns",
    [
        [Turn("user", CONTRACT)],  # a route
        [Turn("user", "Write a Python function that checks whether a number is prime")],
        [Turn("user", "thanks, that's all!")],  # chit-chat
        [Turn("user", "What is the capital of France?")],  # out of scope
        [Turn("user", CONTRACT_PARAPHRASE)],  # a no-route example
        [Turn("user", "Translate this into Spanish: hello"), Turn("assistant", "hola"), Turn("user", "now in French")],
        [Turn("system", "You are terse."), Turn("user", AMBIGUOUS)],
    ],
)  # fmt: skip
def test_every_embedded_decision_has_a_confidence_between_0_and_1(
    declining: RoutingService, turns: list[Turn]
) -> None:
    decision = asyncio.run(declining.decide(RoutingRequest(None, tuple(turns))))
    assert decision.router == "embedded"
    assert isinstance(decision.confidence, float)
    assert 0.0 <= decision.confidence <= 1.0


def test_a_clear_cut_request_is_more_confident_than_an_ambiguous_one(
    zero_shot: RoutingService,
) -> None:
    clear = decide(zero_shot, ask(CLEAR_CODE, prefs=CODE_AND_POETRY))
    ambiguous = decide(zero_shot, ask(AMBIGUOUS, prefs=CODE_AND_POETRY))

    assert clear.route == "code"
    assert clear.confidence is not None and ambiguous.confidence is not None
    assert clear.confidence > ambiguous.confidence + 0.1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/routing/v1/chat/completions", chat(CONTRACT)),
        ("/routing/v1/messages", {"max_tokens": 16, **chat(CONTRACT)}),
        ("/routing/v1/responses", {"input": CONTRACT}),
    ],
)
def test_the_decision_api_reports_the_embedded_routers_confidence(
    gateway: httpx.Client, router: EmbeddedRouter, path: str, body: dict[str, Any]
) -> None:
    response = gateway.post(path, json=body)

    assert response.status_code == 200, response.text
    decision = response.json()
    expected = router.classify([Turn("user", CONTRACT)], config_with().routing_preferences)
    assert decision["route"] == "translation"
    assert decision["confidence"] == expected.confidence
    assert 0.0 <= decision["confidence"] <= 1.0
    assert "escalated" not in decision  # no cascade here


# --- bad inline no-route examples ----------------------------------------------------------


@pytest.mark.parametrize("value", ["decline this", ["ok", 3], [None], {"text": "x"}, [["nested"]]])
@pytest.mark.parametrize("path", ["/routing/v1/chat/completions", "/v1/chat/completions"])
def test_no_route_examples_must_be_a_list_of_strings(
    gateway: httpx.Client, cleared: tuple[FakeProvider, FakeProvider], path: str, value: object
) -> None:
    response = gateway.post(path, json=chat(CONTRACT, model="gpt-4o-mini", no_route_examples=value))

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "no_route_examples")
    assert cleared[0].requests == []  # refused before any upstream call


def test_the_messages_decision_api_refuses_bad_no_route_examples(gateway: httpx.Client) -> None:
    response = gateway.post("/routing/v1/messages", json=chat(CONTRACT, no_route_examples="x"))
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "no_route_examples" in response.json()["error"]["message"]


def test_inline_examples_are_bounded_in_all(gateway: httpx.Client) -> None:
    """Inline route examples and no-route examples count together against one limit."""
    limit = MAX_INLINE_EXAMPLES

    def body(route_examples: int, no_route: int) -> dict[str, Any]:
        route = {
            "name": "translate",
            "description": "translating text",
            "models": ["x/y"],
            "examples": ["translate this"] * route_examples,
        }
        no_route_examples = [f"decline request number {i}" for i in range(no_route)]
        return chat(CONTRACT, routing_preferences=[route], no_route_examples=no_route_examples)

    at_limit = gateway.post("/routing/v1/chat/completions", json=body(limit - 1, 1))
    over = gateway.post("/routing/v1/chat/completions", json=body(limit - 1, 2))

    assert at_limit.status_code == 200, at_limit.text
    assert over.status_code == 400
    assert f"at most {limit} examples" in over.json()["error"]["message"]


def test_too_many_no_route_examples_alone_are_refused(gateway: httpx.Client) -> None:
    many = [f"decline request number {i}" for i in range(MAX_INLINE_EXAMPLES + 1)]

    response = gateway.post(
        "/routing/v1/chat/completions", json=chat(CONTRACT, no_route_examples=many)
    )

    assert response.status_code == 400
    assert f"at most {MAX_INLINE_EXAMPLES} examples" in response.json()["error"]["message"]


def test_too_many_no_route_examples_are_reported_against_that_field(
    zero_shot: RoutingService,
) -> None:
    """The client sent no routing_preferences: the error must name the field it did send."""
    many = [f"decline request number {i}" for i in range(MAX_INLINE_EXAMPLES + 1)]
    with pytest.raises(RequestError) as caught:
        decide(zero_shot, ask(CONTRACT, no_route=many))
    assert caught.value.status == 400
    assert caught.value.param == "no_route_examples"
