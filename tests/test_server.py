"""The decision endpoints over real HTTP: each API's request shape in, {models, route, trace_id} out."""

from __future__ import annotations

import httpx
import pytest
from conftest import ServerThread, free_port

from turnout.config import Config
from turnout.routing.decision import RoutingService
from turnout.routing.embedded import EmbeddedRouter
from turnout.server.app import create_app

CODE_PROMPT = "Write a Python function that implements binary search on a sorted array"
REASONING_PROMPT = (
    "Analyze the trade-offs between microservices and a monolith for a small startup, step by step"
)


def chat(text: str, **extra: object) -> dict:
    return {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def test_chat_completions_routes_code_to_the_code_route(gateway: httpx.Client) -> None:
    response = gateway.post("/routing/v1/chat/completions", json=chat(CODE_PROMPT))
    assert response.status_code == 200
    body = response.json()
    assert body["route"] == "code_generation"
    assert body["models"] == ["anthropic/claude-sonnet-4-20250514", "openai/gpt-4o"]
    assert len(body["trace_id"]) == 32
    assert response.headers["x-request-id"] == body["trace_id"]


def test_messages_endpoint_reads_anthropic_system_and_blocks(gateway: httpx.Client) -> None:
    body = {
        "model": "anthropic/claude-sonnet-4-20250514",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "You are terse."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": REASONING_PROMPT}]}],
    }
    response = gateway.post("/routing/v1/messages", json=body)
    assert response.status_code == 200
    assert response.json()["route"] == "complex_reasoning"
    assert response.json()["models"] == ["openai/gpt-4o", "openai/gpt-4o-mini"]


@pytest.mark.parametrize(
    "input_value",
    [
        CODE_PROMPT,
        [{"role": "user", "content": [{"type": "input_text", "text": CODE_PROMPT}]}],
    ],
)
def test_responses_endpoint_accepts_string_and_item_input(
    gateway: httpx.Client, input_value: object
) -> None:
    body = {"model": "openai/gpt-4o", "instructions": "Be brief.", "input": input_value}
    response = gateway.post("/routing/v1/responses", json=body)
    assert response.status_code == 200
    assert response.json()["route"] == "code_generation"


def test_no_route_answers_the_requests_own_model(gateway: httpx.Client) -> None:
    response = gateway.post(
        "/routing/v1/chat/completions", json={**chat("hi there!"), "model": "openai/gpt-4o"}
    )
    assert response.json()["route"] is None
    assert response.json()["models"] == ["openai/gpt-4o"]


def test_no_route_with_an_unknown_model_answers_the_default(gateway: httpx.Client) -> None:
    body = {**chat("thanks, bye"), "model": "somebody/else"}
    response = gateway.post("/routing/v1/chat/completions", json=body)
    assert response.json() == {**response.json(), "route": None, "models": ["openai/gpt-4o-mini"]}


def test_inline_routing_preferences_replace_the_configured_routes(gateway: httpx.Client) -> None:
    prefs = [
        {
            "name": "translation",
            "description": "translating text between languages",
            "models": ["openai/gpt-4o"],
        },
        {
            "name": "code",
            "description": "writing new code",
            "models": ["anthropic/claude-sonnet-4-20250514"],
        },
    ]
    body = chat("Translate 'the meeting moved to Monday' into German", routing_preferences=prefs)
    response = gateway.post("/routing/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.json()["route"] == "translation"
    assert response.json()["models"] == ["openai/gpt-4o"]


def test_invalid_inline_routing_preferences_are_a_400_naming_the_key(gateway: httpx.Client) -> None:
    body = chat(CODE_PROMPT, routing_preferences=[{"name": "x", "models": []}])
    response = gateway.post("/routing/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"].startswith("routing_preferences[0]")


def test_traceparent_is_continued(gateway: httpx.Client) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    response = gateway.post("/routing/v1/chat/completions", json=chat(CODE_PROMPT), headers=headers)
    assert response.json()["trace_id"] == trace_id


@pytest.mark.parametrize(
    "header", ["garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"]
)
def test_invalid_traceparent_starts_a_new_trace(gateway: httpx.Client, header: str) -> None:
    response = gateway.post(
        "/routing/v1/chat/completions", json=chat(CODE_PROMPT), headers={"traceparent": header}
    )
    trace_id = response.json()["trace_id"]
    assert len(trace_id) == 32 and trace_id != "0" * 32


def test_explain_adds_scores_and_reason(gateway: httpx.Client) -> None:
    response = gateway.post("/routing/v1/chat/completions?explain=1", json=chat(CODE_PROMPT))
    body = response.json()
    assert set(body["scores"]) == {"complex_reasoning", "code_generation"}
    assert body["scores"]["code_generation"] > body["scores"]["complex_reasoning"]
    assert body["reason"] and body["router"] == "embedded"


def test_without_explain_the_body_is_the_decision_and_the_router_that_made_it(
    gateway: httpx.Client,
) -> None:
    response = gateway.post("/routing/v1/chat/completions", json=chat(CODE_PROMPT))
    assert set(response.json()) == {"models", "route", "trace_id", "router", "confidence"}
    assert response.json()["router"] == "embedded"
    assert 0 < response.json()["confidence"] < 1


def test_routing_preferences_are_not_treated_as_conversation(gateway: httpx.Client) -> None:
    prefs = [{"name": "code", "description": "writing new code", "models": ["openai/gpt-4o"]}]
    response = gateway.post(
        "/routing/v1/chat/completions", json=chat("hello!", routing_preferences=prefs)
    )
    assert response.json()["route"] is None


def test_healthz_and_models(gateway: httpx.Client) -> None:
    assert gateway.get("/healthz").json()["status"] == "ok"
    models = gateway.get("/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == [
        "openai/gpt-4o-mini",
        "openai/gpt-4o",
        "anthropic/claude-sonnet-4-20250514",
    ]


def test_readyz_is_503_until_the_router_is_indexed(
    demo_config: Config, router: EmbeddedRouter
) -> None:
    service = RoutingService(demo_config, router)
    with ServerThread(create_app(service), free_port()) as server:
        before = httpx.get(f"{server.url}/readyz")
        service.prepare()
        after = httpx.get(f"{server.url}/readyz")
        alive = httpx.get(f"{server.url}/healthz")

    assert (before.status_code, before.json()["status"]) == (503, "not_ready")
    assert before.json()["router"] is False
    assert (after.status_code, after.json()) == (
        200,
        {"status": "ready", "router": True, "upstream_pool": True},
    )
    assert alive.status_code == 200


# Bad input: a 4xx in the caller's own envelope, never a 500 and never a hang.

OPENAI_PATHS = ["/routing/v1/chat/completions", "/routing/v1/responses"]
ALL_PATHS = [*OPENAI_PATHS, "/routing/v1/messages"]


def assert_envelope(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    if response.request.url.path.endswith("/messages"):
        assert body["type"] == "error"
        return body["error"]
    return body["error"]


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe", b"null"])
def test_malformed_bodies_are_400_in_the_apis_envelope(
    gateway: httpx.Client, path: str, raw: bytes
) -> None:
    response = gateway.post(path, content=raw, headers={"content-type": "application/json"})
    error = assert_envelope(response, 400)
    assert error["type"] == "invalid_request_error"
    assert error["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/routing/v1/chat/completions", {"model": "x"}),
        ("/routing/v1/chat/completions", {"messages": []}),
        ("/routing/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}),
        ("/routing/v1/messages", {"messages": "hello"}),
        ("/routing/v1/messages", {"system": 3, "messages": [{"role": "user", "content": "hi"}]}),
        ("/routing/v1/responses", {"input": []}),
        ("/routing/v1/responses", {"input": 42}),
    ],
)
def test_wrong_shapes_are_400(gateway: httpx.Client, path: str, body: dict) -> None:
    assert_envelope(gateway.post(path, json=body), 400)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_body_over_the_limit_is_413(gateway: httpx.Client, path: str) -> None:
    big = b'{"messages": [{"role": "user", "content": "' + b"a" * (9 * 1024 * 1024) + b'"}]}'
    error = assert_envelope(gateway.post(path, content=big), 413)
    assert "limit" in error["message"]


def test_unknown_path_is_a_404_envelope(gateway: httpx.Client) -> None:
    error = assert_envelope(gateway.post("/routing/v1/nope", json={}), 404)
    assert error["type"] == "not_found_error" or error["type"] == "invalid_request_error"


def test_wrong_method_is_405(gateway: httpx.Client) -> None:
    assert_envelope(gateway.get("/routing/v1/chat/completions"), 405)
