"""Route feedback end to end: an admin corrects a decision (by trace id or by messages), the
correction is persisted in the example cache, changes the next decision without a restart, and
reaches other instances through the shared file or Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from conftest import ServerThread, free_port
from redis_server import RedisServer, running_redis

from turnout.config import parse_config
from turnout.routing.decision import RoutingService
from turnout.routing.embedded import EmbeddedRouter
from turnout.routing.example_cache import CacheFile, read_cache, write_cache
from turnout.routing.examples import RouteExamples
from turnout.routing.feedback import corrected, merged
from turnout.routing.recent import RecentDecisions
from turnout.server.app import create_app

ADMIN_KEY = "tk-admin-0123456789abcdef"
TEAM_KEY = "tk-team-0123456789abcdef"

# Checked against the demo routes before each correction: the router's own answer differs.
TRIP = "Plan a three-day trip to Rome"  # no route, until corrected to complex_reasoning
SUMMARY = "Summarize this meeting in three bullets"  # complex_reasoning, corrected to code
SKY = "Explain why the sky is blue"  # complex_reasoning, corrected to no route

BASE = """
version: v0.4.0
model_providers:
  - model: openai/gpt-4o-mini
    access_key: test-key
    default: true
  - model: openai/gpt-4o
    access_key: test-key
  - model: anthropic/claude-sonnet-4-20250514
    access_key: test-key
routing_preferences:
  - name: complex_reasoning
    description: complex reasoning tasks, multi-step analysis, or detailed explanations
    models: [openai/gpt-4o, openai/gpt-4o-mini]
  - name: code_generation
    description: generating new code, writing functions, or creating boilerplate
    models: [anthropic/claude-sonnet-4-20250514, openai/gpt-4o]
"""
KEYS = """
governance:
  {storage}
  client_keys:
    - name: ops
      key: $ADMIN_KEY
      admin: true
    - name: team
      key: $TEAM_KEY
"""


def config_text(cache: Path | None = None, redis: str | None = None, keys: bool = True) -> str:
    text = BASE
    if keys:
        storage = f'storage: {{type: redis, url: "{redis}"}}' if redis else ""
        text += KEYS.format(storage=storage)
    if cache is not None:
        text += f'routing:\n  bootstrap: {{cache_path: "{cache}"}}\n'
    return text


@contextmanager
def gateway(router: EmbeddedRouter, text: str) -> Iterator[httpx.Client]:
    config = parse_config(text, env={"ADMIN_KEY": ADMIN_KEY, "TEAM_KEY": TEAM_KEY})
    service = RoutingService(config, router)
    service.prepare()
    with (
        ServerThread(create_app(service), free_port()) as server,
        httpx.Client(base_url=server.url, timeout=20) as client,
    ):
        yield client


def auth(key: str = ADMIN_KEY) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def decide(client: httpx.Client, text: str) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    response = client.post("/routing/v1/chat/completions", json=body, headers=auth(TEAM_KEY))
    assert response.status_code == 200, response.text
    return response


def route_of(client: httpx.Client, text: str) -> str | None:
    return decide(client, text).json()["route"]


def feedback(client: httpx.Client, body: object, key: str | None = ADMIN_KEY) -> httpx.Response:
    return client.post("/routing/v1/feedback", json=body, headers=auth(key) if key else {})


def messages(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


def eventually(check: Callable[[], bool], seconds: float = 15) -> None:
    """Poll until `check` holds; the sync loop runs every 2 s, so this is never long."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.1)


# ---------------------------------------------------------------- one instance


def test_feedback_by_trace_id_changes_the_next_decision(router, tmp_path) -> None:
    with gateway(router, config_text(tmp_path / "examples.yaml")) as client:
        first = decide(client, TRIP).json()
        assert first["route"] is None
        response = feedback(client, {"trace_id": first["trace_id"], "route": "complex_reasoning"})
        assert response.status_code == 200, response.text
        assert response.json() == {"route": "complex_reasoning", "text": TRIP, "examples": 1}
        assert route_of(client, TRIP) == "complex_reasoning"


def test_feedback_by_messages_and_to_no_route(router, tmp_path) -> None:
    with gateway(router, config_text(tmp_path / "examples.yaml")) as client:
        assert route_of(client, SUMMARY) == "complex_reasoning"
        assert route_of(client, SKY) == "complex_reasoning"
        moved = feedback(client, {"messages": messages(SUMMARY), "route": "code_generation"})
        assert moved.status_code == 200, moved.text
        assert moved.json()["text"] == SUMMARY
        # x-api-key works as well as Bearer
        response = client.post(
            "/routing/v1/feedback",
            json={"messages": messages(SKY), "route": None},
            headers={"x-api-key": ADMIN_KEY},
        )
        assert response.status_code == 200, response.text
        assert response.json()["route"] is None
        assert route_of(client, SUMMARY) == "code_generation"
        assert route_of(client, SKY) is None


def test_feedback_is_persisted_deduplicated_and_survives_a_restart(router, tmp_path) -> None:
    path = tmp_path / "examples.yaml"
    with gateway(router, config_text(path)) as client:
        assert route_of(client, TRIP) is None
        body = {"messages": messages(TRIP), "route": "code_generation"}
        assert feedback(client, body).json()["examples"] == 1
        assert feedback(client, body).json()["examples"] == 1  # the same correction: one example
        upper = {"messages": messages(TRIP.upper()), "route": "code_generation"}
        assert feedback(client, upper).json()["examples"] == 1  # case does not make a new one
        moved = feedback(client, {"messages": messages(TRIP), "route": "complex_reasoning"})
        assert moved.json()["examples"] == 1
    saved = read_cache(path).feedback
    assert saved.routes.get("code_generation", ()) == ()  # moved: it left its old route
    assert saved.routes["complex_reasoning"] == (TRIP,)
    with gateway(router, config_text(path)) as client:  # a new process, same file
        eventually(lambda: route_of(client, TRIP) == "complex_reasoning")


def test_without_a_cache_file_feedback_is_kept_in_memory(router) -> None:
    with gateway(router, config_text()) as client:
        assert route_of(client, TRIP) is None
        response = feedback(client, {"messages": messages(TRIP), "route": "complex_reasoning"})
        assert response.status_code == 200, response.text
        assert route_of(client, TRIP) == "complex_reasoning"


def test_a_rewritten_cache_file_is_picked_up(router, tmp_path) -> None:
    """What a background bootstrap, an operator's edit, or another worker's feedback does."""
    path = tmp_path / "examples.yaml"
    with gateway(router, config_text(path)) as client:
        assert route_of(client, SUMMARY) == "complex_reasoning"
        write_cache(path, CacheFile(feedback=RouteExamples({"code_generation": (SUMMARY,)})))
        eventually(lambda: route_of(client, SUMMARY) == "code_generation")


def test_workers_sharing_one_cache_file_see_each_others_feedback(router, tmp_path) -> None:
    text = config_text(tmp_path / "examples.yaml")
    with gateway(router, text) as one, gateway(router, text) as two:
        assert route_of(two, TRIP) is None
        response = feedback(one, {"messages": messages(TRIP), "route": "complex_reasoning"})
        assert response.status_code == 200, response.text
        eventually(lambda: route_of(two, TRIP) == "complex_reasoning")


# ---------------------------------------------------------------- refusals


def test_bad_feedback_is_refused_with_a_clear_message(router, tmp_path) -> None:
    path = tmp_path / "examples.yaml"
    with gateway(router, config_text(path)) as client:
        trace_id = decide(client, TRIP).json()["trace_id"]
        good = {"trace_id": trace_id, "route": "complex_reasoning"}

        unknown_route = feedback(client, {"trace_id": trace_id, "route": "poetry"})
        assert unknown_route.status_code == 400
        message = unknown_route.json()["error"]["message"]
        assert "poetry" in message and "complex_reasoning, code_generation" in message

        unknown_trace = feedback(client, {"trace_id": "0" * 32, "route": "code_generation"})
        assert unknown_trace.status_code == 404
        assert "trace id" in unknown_trace.json()["error"]["message"]

        assert feedback(client, good, key=None).status_code == 401
        assert feedback(client, good, key="tk-wrong-0123456789abcdef").status_code == 401
        not_admin = feedback(client, good, key=TEAM_KEY)
        assert not_admin.status_code == 403
        assert "admin" in not_admin.json()["error"]["message"]

        malformed: list[tuple[object, str]] = [
            ([good], "JSON object"),
            ({"route": "code_generation"}, "either `trace_id`"),
            ({**good, "messages": messages(TRIP)}, "not both"),
            ({"trace_id": trace_id}, "`route` is required"),
            ({"trace_id": 7, "route": None}, "`trace_id` must be"),
            ({"messages": [{"role": "system", "content": "x"}], "route": None}, "no user text"),
            ({"messages": "hi", "route": None}, "messages"),
            ({"trace_id": trace_id, "route": 3}, "unknown route"),
        ]
        for body, expected in malformed:
            response = feedback(client, body)
            assert response.status_code == 400, (body, response.text)
            assert expected in response.json()["error"]["message"], (body, response.text)
        not_json = client.post("/routing/v1/feedback", content=b"{route", headers=auth())
        assert not_json.status_code == 400
        assert "not valid JSON" in not_json.json()["error"]["message"]

        assert route_of(client, TRIP) is None  # nothing above changed routing
    assert not path.exists() or read_cache(path).feedback == RouteExamples()


def test_a_broken_cache_file_is_never_overwritten(router, tmp_path) -> None:
    path = tmp_path / "examples.yaml"
    with gateway(router, config_text(path)) as client:
        path.write_text("routes: [not, a, mapping", "utf-8")  # an operator's typo
        response = feedback(client, {"messages": messages(TRIP), "route": "complex_reasoning"})
        assert response.status_code == 500
        assert "cannot be updated" in response.json()["error"]["message"]
        assert path.read_text("utf-8") == "routes: [not, a, mapping"
        assert route_of(client, TRIP) is None  # routing goes on with what was loaded


def test_an_open_gateway_refuses_feedback(router) -> None:
    with gateway(router, config_text(keys=False)) as client:
        response = client.post(
            "/routing/v1/feedback", json={"messages": messages(TRIP), "route": None}
        )
    assert response.status_code == 403
    assert "admin: true" in response.json()["error"]["message"]


# ---------------------------------------------------------------- replicas through Redis


def test_feedback_reaches_another_instance_through_redis(router, tmp_path) -> None:
    with running_redis() as redis:
        one_text = config_text(tmp_path / "one.yaml", redis=redis.url)
        two_text = config_text(tmp_path / "two.yaml", redis=redis.url)
        with gateway(router, one_text) as one, gateway(router, two_text) as two:
            assert route_of(two, SUMMARY) == "complex_reasoning"
            response = feedback(one, {"messages": messages(SUMMARY), "route": "code_generation"})
            assert response.status_code == 200, response.text
            eventually(lambda: route_of(two, SUMMARY) == "code_generation")
        # A replica started later, with an empty file of its own, starts from Redis.
        three_text = config_text(tmp_path / "three.yaml", redis=redis.url)
        with gateway(router, three_text) as three:
            eventually(lambda: route_of(three, SUMMARY) == "code_generation")


def test_a_decision_on_one_instance_is_corrected_on_another(router) -> None:
    with running_redis() as redis:
        text = config_text(redis=redis.url)
        with gateway(router, text) as one, gateway(router, text) as two:
            decision = decide(one, TRIP).json()
            assert decision["route"] is None
            body = {"trace_id": decision["trace_id"], "route": "complex_reasoning"}
            answers: list[httpx.Response] = []

            def accepted() -> bool:  # the decision reaches Redis in the background
                answers.append(feedback(two, body))
                return answers[-1].status_code == 200

            eventually(accepted, seconds=5)
            assert answers[-1].json()["text"] == TRIP
            assert {a.status_code for a in answers[:-1]} <= {404}
            assert route_of(two, TRIP) == "complex_reasoning"
            eventually(lambda: route_of(one, TRIP) == "complex_reasoning")


def test_redis_down_refuses_feedback_and_keeps_routing(router) -> None:
    redis = RedisServer()  # never started: nothing listens on its port
    with gateway(router, config_text(redis=redis.url)) as client:
        trace_id = decide(client, TRIP).json()["trace_id"]
        response = feedback(client, {"messages": messages(TRIP), "route": "complex_reasoning"})
        assert response.status_code == 503
        assert "not applied" in response.json()["error"]["message"]
        # found in this process's memory, but not applied while Redis is down either
        by_trace = feedback(client, {"trace_id": trace_id, "route": "complex_reasoning"})
        assert by_trace.status_code == 503
        assert route_of(client, TRIP) is None


# ---------------------------------------------------------------- the pieces


def test_a_corrected_text_leaves_every_other_route_and_the_written_examples() -> None:
    feedback_examples = corrected(RouteExamples(), "Plan a trip", "a")
    assert corrected(feedback_examples, "plan  a TRIP", "a") is feedback_examples
    moved = corrected(feedback_examples, "Plan a trip", None)
    assert moved == RouteExamples({}, ("Plan a trip",))
    cache = CacheFile(
        key="k",
        bootstrapped=RouteExamples({"a": ("Plan a trip", "Book a hotel")}, ("hi",)),
        feedback=moved,
    )
    assert merged(cache, "k", {}) == RouteExamples({"a": ("Book a hotel",)}, ("Plan a trip", "hi"))
    assert merged(cache, "other", {}) == moved  # written for other routes: not used
    shared = {"plan a trip": ("Plan a trip", "b")}  # Redis has the newer word
    assert merged(cache, "k", shared).routes == {"b": ("Plan a trip",), "a": ("Book a hotel",)}


def test_recent_decisions_are_bounded_and_expire() -> None:
    now = [0.0]
    recent = RecentDecisions(max_entries=3, ttl=60, clock=lambda: now[0])
    for i in range(5):
        recent.remember(f"t{i}", f"text {i}")
    assert asyncio.run(recent.lookup("t0")) is None  # pushed out by newer ones
    assert asyncio.run(recent.lookup("t4")) == "text 4"
    now[0] = 61
    assert asyncio.run(recent.lookup("t4")) is None  # expired
