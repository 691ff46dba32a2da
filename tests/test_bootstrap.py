"""Bootstrapped route examples against a fake LLM that speaks the providers' real wire formats:
the exact prompt, reading and validating replies, retries, timeouts and refusals, the cache that
`turnout up` reuses or rebuilds, the `turnout routes` commands, and the swap of examples into a
router that keeps deciding while they are written."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SHARED_SUITES
from fakes import FakeProvider, Fault, Reply
from test_cli import assert_clean_failure, turnout

from turnout.config import Config, load_config, parse_config
from turnout.providers.upstream import UpstreamPool
from turnout.routing import bootstrap, example_upkeep
from turnout.routing.bootstrap import (
    BootstrapError,
    BootstrapReplyError,
    bootstrap_prompt,
    parse_examples,
    write_examples,
)
from turnout.routing.conversation import RoutingRequest, Turn
from turnout.routing.decision import RoutingService
from turnout.routing.embedded import EmbeddedRouter
from turnout.routing.example_cache import CacheFile, cache_key, read_cache, write_cache
from turnout.routing.example_upkeep import build_in_background
from turnout.routing.examples import RouteExamples
from turnout.server import runner

GOLDEN = Path(__file__).parent / "golden" / "bootstrap_prompt_general.txt"
KEY = "sk-bootstrap-test-key-1234"
NAMES = ["code_generation", "translation", "office_desk"]
# Only its examples make this request an office_desk one: zero-shot it gets no route.
DESK_ONLY = "my badge stopped opening the garage door"
WRITTEN = {
    "code_generation": [
        "write a python function that sorts a list of dicts by a key",
        "bash script to back up my home folder",
        "Create a React component for a login form",
        "regex for email validation pls",
    ],
    "translation": [
        "translate 'good morning' into Spanish",
        "How do you say thank you in Japanese?",
        "put this paragraph into French: we are closed on Monday",
        "German to English: Ich habe Hunger",
    ],
    "office_desk": [
        DESK_ONLY,
        "the printer on the third floor is jammed again",
        "the meeting room projector won't turn on",
        "we are out of paper towels in the 2nd floor restroom",
    ],
}
WRITTEN_NO_ROUTE = ["hi there", "thanks, that's all", "what's the weather like?", "you're great"]


def reply_text(
    routes: dict[str, list[str]] | None = None, no_route: list[str] | None = None
) -> str:
    return json.dumps(
        {
            "routes": WRITTEN if routes is None else routes,
            "no_route": WRITTEN_NO_ROUTE if no_route is None else no_route,
        }
    )


def config_for(
    llm_url: str,
    cache: Path | None = None,
    *,
    writer: str = "openai/writer",
    desk: str = "tickets for the office desk",
    key: str = KEY,
    bootstrap_model: str | None = "openai/writer",
) -> Config:
    settings = ""
    if cache is not None:
        model = f"\n    model: {bootstrap_model}" if bootstrap_model else ""
        settings = f"""
routing:
  bootstrap:
    cache_path: {cache}{model}
    per_route: 4
    no_route: 4
    timeout_seconds: 5
"""
    return parse_config(
        f"""
version: v0.4.0
model_providers:
  - model: openai/gpt-4o-mini
    base_url: http://127.0.0.1:9
    access_key: upstream-key
    default: true
  - model: {writer}
    base_url: {llm_url}
    access_key: {key}
model_aliases:
  writer-alias:
    target: {writer}
routing_preferences:
  - name: code_generation
    description: generating new code, writing functions, or creating boilerplate
    models: [openai/gpt-4o-mini]
  - name: translation
    description: translating text between languages
    models: [openai/gpt-4o-mini]
  - name: office_desk
    description: {desk}
    models: [openai/gpt-4o-mini]
{settings}""",
        env={},
    )


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeProvider]:
    with FakeProvider("openai", api_key=KEY) as fake:
        yield fake


@pytest.fixture()
def llm(fake_openai: FakeProvider) -> FakeProvider:
    fake_openai.clear()
    return fake_openai


@pytest.fixture(autouse=True)
def no_retry_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bootstrap, "RETRY_DELAY_SECONDS", 0.0)


def write(config: Config, model: str = "openai/writer", **options: float) -> RouteExamples:
    async def run() -> RouteExamples:
        pool = UpstreamPool()
        try:
            return await write_examples(config, pool, model, 4, 4, **options)  # type: ignore[arg-type]
        finally:
            await pool.aclose()

    return asyncio.run(run())


def ask(text: str) -> RoutingRequest:
    return RoutingRequest(model=None, turns=(Turn("user", text),))


def decide(service: RoutingService, text: str) -> str | None:
    return asyncio.run(service.decide(ask(text))).route


# ---- the prompt ----------------------------------------------------------------------------


def test_the_prompt_for_general_dev_is_the_one_the_benchmark_fixtures_were_written_from() -> None:
    config = load_config(SHARED_SUITES / "general-dev" / "routes.yaml", env={"EVAL_KEY": "x"})
    expected = GOLDEN.read_text("utf-8").removesuffix("\n")
    assert bootstrap_prompt(config.routing_preferences, 25, 40) == expected


# ---- reading replies -----------------------------------------------------------------------


def test_a_reply_in_code_fences_with_prose_around_it_is_read() -> None:
    reply = f"Sure! Here you go:\n```json\n{reply_text()}\n```\nLet me know if you need more."
    examples = parse_examples(reply, NAMES, 4, 4)
    assert examples.routes == {name: tuple(texts) for name, texts in WRITTEN.items()}
    assert examples.no_route == tuple(WRITTEN_NO_ROUTE)


def test_the_benchmark_fixture_replies_are_read_whole() -> None:
    reply = (
        Path(__file__).parent.parent / "bench/routing/examples/general-dev.reply.json"
    ).read_text()
    examples = parse_examples(reply, list(json.loads(reply)["routes"]), 25, 40)
    assert {len(texts) for texts in examples.routes.values()} == {25}
    assert len(examples.no_route) == 40


def test_repeats_are_dropped_and_a_text_under_two_labels_is_dropped_everywhere() -> None:
    routes = {name: list(texts) for name, texts in WRITTEN.items()}
    routes["code_generation"] += [
        "  Bash   script to back up my HOME folder ",
        "translate 'good morning' into spanish",
    ]
    no_route = [*WRITTEN_NO_ROUTE, "the printer on the third floor is jammed again", "Hi  there"]
    examples = parse_examples(reply_text(routes, no_route), NAMES, 6, 6)
    assert examples.routes["code_generation"] == (
        "write a python function that sorts a list of dicts by a key",
        "bash script to back up my home folder",
        "Create a React component for a login form",
        "regex for email validation pls",
    )
    assert "translate 'good morning' into Spanish" not in examples.routes["translation"]
    assert "the printer on the third floor is jammed again" not in examples.routes["office_desk"]
    assert examples.no_route == tuple(WRITTEN_NO_ROUTE)


def test_unknown_routes_are_logged_and_ignored_and_a_change_of_case_is_the_same_route(
    caplog: pytest.LogCaptureFixture,
) -> None:
    routes = {
        "code_generation": WRITTEN["code_generation"],
        "Translation": WRITTEN["translation"],
        "office_desk": WRITTEN["office_desk"],
        "cooking": ["how long do I boil an egg"],
    }
    with caplog.at_level(logging.WARNING, "turnout.bootstrap"):
        examples = parse_examples(reply_text(routes), NAMES, 4, 4)
    assert set(examples.routes) == set(NAMES)
    assert examples.routes["translation"] == tuple(WRITTEN["translation"])
    assert "how long do I boil an egg" not in {
        t for texts in examples.routes.values() for t in texts
    }
    assert "cooking" in caplog.text


def test_long_texts_non_texts_and_extras_are_left_out() -> None:
    routes = {name: list(texts) for name, texts in WRITTEN.items()}
    routes["code_generation"] = ["x" * 2001, 42, None, "", *routes["code_generation"], "one more"]  # type: ignore[list-item]
    examples = parse_examples(reply_text(routes), NAMES, 4, 3)
    assert examples.routes["code_generation"] == tuple(WRITTEN["code_generation"])
    assert examples.no_route == tuple(WRITTEN_NO_ROUTE[:3])


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("I can't help with that.", 'no JSON object: "I can\'t help with that."'),
        (reply_text()[:-40], "no complete JSON object"),
        ('{"answer": 42}', "has no `routes`"),
        ('{"routes": ["a", "b"], "no_route": []}', "`routes` must be a JSON object"),
        (
            '{"routes": {"translation": "hola"}, "no_route": []}',
            "`routes.translation` must be a list",
        ),
        (json.dumps({"routes": WRITTEN}), "no `no_route` list"),
        (
            reply_text({**WRITTEN, "translation": WRITTEN["translation"][:1]}),
            "too few usable requests for translation (1 of 4)",
        ),
        (reply_text(no_route=["hi"]), "no route (1 of 4)"),
    ],
)
def test_an_unusable_reply_is_refused_with_the_reason(reply: str, message: str) -> None:
    with pytest.raises(BootstrapReplyError) as caught:
        parse_examples(reply, NAMES, 4, 4)
    assert message in str(caught.value)


def test_a_route_missing_from_the_reply_is_too_few() -> None:
    routes = {name: texts for name, texts in WRITTEN.items() if name != "office_desk"}
    with pytest.raises(BootstrapReplyError, match=r"office_desk \(0 of 4\)"):
        parse_examples(reply_text(routes), NAMES, 4, 4)


# ---- asking the model ----------------------------------------------------------------------


def test_a_good_reply_becomes_the_examples_and_the_request_is_the_prompt(
    llm: FakeProvider,
) -> None:
    llm.queue(Reply(reply_text()))
    config = config_for(llm.url)
    examples = write(config, "writer-alias")

    assert examples.routes["office_desk"] == tuple(WRITTEN["office_desk"])
    assert examples.no_route == tuple(WRITTEN_NO_ROUTE)
    [request] = llm.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body == {
        "model": "writer",
        "messages": [
            {"role": "user", "content": bootstrap_prompt(config.routing_preferences, 4, 4)}
        ],
        "temperature": 0.7,
        "max_tokens": 16000,
    }


def test_a_malformed_reply_is_retried_with_the_problem_noted(llm: FakeProvider) -> None:
    llm.queue(Reply('{"routes": {"code_generation": ["write'), Reply(reply_text()))
    config = config_for(llm.url)
    examples = write(config)

    assert examples.routes["translation"] == tuple(WRITTEN["translation"])
    assert len(llm.requests) == 2
    prompt = bootstrap_prompt(config.routing_preferences, 4, 4)
    retry = llm.requests[1].body["messages"][0]["content"]
    assert retry.startswith(prompt)
    assert "previous reply could not be used: the reply holds no complete JSON object" in retry


def test_an_http_error_is_retried(llm: FakeProvider) -> None:
    llm.queue(Fault(503, "overloaded"), Reply(reply_text()))
    assert len(write(config_for(llm.url))) == 16
    assert len(llm.requests) == 2


def test_a_model_that_refuses_temperature_is_asked_again_without_it(llm: FakeProvider) -> None:
    llm.queue(Fault(400, "Unsupported parameter: 'max_tokens'"), Reply(reply_text()))
    write(config_for(llm.url))
    second = llm.requests[1].body
    assert "temperature" not in second
    assert "max_tokens" not in second
    assert second["max_completion_tokens"] == 16000


def test_a_slow_model_is_a_timeout_error(llm: FakeProvider) -> None:
    llm.queue(Reply(reply_text(), delay=3))
    with pytest.raises(BootstrapError, match=r"openai/writer wrote no reply within 0.3s"):
        write(config_for(llm.url), timeout=0.3)
    assert len(llm.requests) == 1


def test_a_model_that_always_refuses_fails_clearly_after_every_attempt(llm: FakeProvider) -> None:
    llm.queue(*[Reply("I can't help with that.")] * 3)
    with pytest.raises(BootstrapError) as caught:
        write(config_for(llm.url))
    assert len(llm.requests) == 3
    assert str(caught.value) == (
        "openai/writer: no usable examples after 3 attempts: "
        'the reply holds no JSON object: "I can\'t help with that."'
    )


def test_a_rejected_key_fails_at_once_and_is_never_logged(
    llm: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "sk-wrong-but-secret-9876"
    with caplog.at_level(logging.DEBUG), pytest.raises(BootstrapError) as caught:
        write(config_for(llm.url, key=wrong))
    assert len(llm.requests) == 1
    assert "HTTP 401" in str(caught.value)
    assert wrong not in str(caught.value)
    assert wrong not in caplog.text


def test_an_unknown_model_is_named() -> None:
    with pytest.raises(BootstrapError, match="unknown model 'openai/nope'; configured models"):
        write(config_for("http://127.0.0.1:9"), "openai/nope")


def test_an_anthropic_model_writes_through_the_proxys_translation() -> None:
    with FakeProvider("anthropic", api_key=KEY) as fake:
        fake.queue(Reply(reply_text()))
        config = config_for(fake.url, writer="anthropic/claude-writer")
        examples = write(config, "anthropic/claude-writer")
    assert examples.routes["code_generation"] == tuple(WRITTEN["code_generation"])
    [request] = fake.requests
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == KEY
    assert request.body["max_tokens"] == 16000
    assert request.body["temperature"] == 0.7
    prompt = bootstrap_prompt(config.routing_preferences, 4, 4)
    assert request.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": prompt}]}
    ]


# ---- the cache at start-up -----------------------------------------------------------------


def start(config: Config) -> tuple[RoutingService, int]:
    """`turnout up`'s path: the routing service, then the background build once serving;
    returns the service and how many examples it ended up with."""

    async def run() -> RoutingService:
        pool = UpstreamPool()
        try:
            service = runner.routing_service(config, pool)
            await build_in_background(service, config, pool)
            return service
        finally:
            await pool.aclose()

    service = asyncio.run(run())
    examples = sum(len(route.examples) for route in service.route_set.routes)
    return service, examples + len(service.route_set.no_route_examples)


def test_start_up_writes_the_cache_once_and_reuses_it_until_a_description_changes(
    llm: FakeProvider, tmp_path: Path
) -> None:
    cache = tmp_path / "examples.yaml"
    feedback = RouteExamples(routes={"translation": ("say hello in Dutch",)})
    write_cache(cache, CacheFile(feedback=feedback))
    llm.queue(Reply(reply_text()), Reply(reply_text()))

    _, used = start(config_for(llm.url, cache))
    assert len(llm.requests) == 1
    written = read_cache(cache)
    assert written.model == "openai/writer"
    assert written.feedback == feedback  # kept through the build
    assert used == 17

    service, used = start(config_for(llm.url, cache))
    assert len(llm.requests) == 1  # nothing asked: the cache fits
    assert used == 17
    assert service.route_set.routes[2].examples == WRITTEN["office_desk"]

    service, _ = start(config_for(llm.url, cache, desk="tickets for the facilities team"))
    assert len(llm.requests) == 2  # a description changed: written again
    assert read_cache(cache).key != written.key


def test_without_a_bootstrap_model_a_cache_written_by_any_model_serves_its_routes(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "examples.yaml"
    config = config_for("http://127.0.0.1:9", cache, bootstrap_model=None)
    written = RouteExamples(routes={"office_desk": ("the lift is stuck",)})
    key = cache_key(config.routing_preferences, "openai/writer")
    write_cache(cache, CacheFile(key=key, model="openai/writer", bootstrapped=written))
    service, used = start(config)
    assert used == 1
    assert service.route_set.routes[2].examples == ["the lift is stuck"]


def test_a_stale_cache_keeps_only_its_feedback_at_start_up(tmp_path: Path) -> None:
    cache = tmp_path / "examples.yaml"
    config = config_for("http://127.0.0.1:9", cache)  # nothing listens: the build fails, logged
    write_cache(
        cache,
        CacheFile(
            key="not-these-routes",
            model="openai/writer",
            bootstrapped=RouteExamples(routes={"office_desk": ("the lift is stuck",)}),
            feedback=RouteExamples(no_route=("good night",)),
        ),
    )
    service, used = start(config)
    assert used == 1
    assert service.route_set.no_route_examples == ("good night",)


def test_an_unreadable_cache_stops_the_start_naming_the_file(tmp_path: Path) -> None:
    cache = tmp_path / "examples.yaml"
    cache.write_text("routes: [this is not, a mapping]\n")
    with pytest.raises(runner.StartupError, match=str(cache)):
        start(config_for("http://127.0.0.1:9", cache))


def test_only_the_process_holding_the_lock_builds(llm: FakeProvider, tmp_path: Path) -> None:
    cache = tmp_path / "examples.yaml"
    config = config_for(llm.url, cache)
    with example_upkeep._build_lock(cache) as mine:
        assert mine
        _, used = start(config)
    assert used == 0
    assert llm.requests == []
    assert not cache.exists()


def test_a_failed_build_never_raises_and_the_router_stays_zero_shot(
    llm: FakeProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    llm.queue(*[Reply("I can't help with that.")] * 3)
    with caplog.at_level(logging.ERROR, "turnout.bootstrap"):
        _, used = start(config_for(llm.url, tmp_path / "examples.yaml"))
    assert used == 0
    assert "route examples not built: openai/writer: no usable examples" in caplog.text


# ---- the swap under load -------------------------------------------------------------------


def test_the_background_build_swaps_examples_in_while_decisions_go_on(
    llm: FakeProvider, router: EmbeddedRouter, tmp_path: Path
) -> None:
    config = config_for(llm.url, tmp_path / "examples.yaml")
    service = RoutingService(config, router)
    service.prepare()
    assert decide(service, DESK_ONLY) is None
    llm.queue(Reply(reply_text(), delay=0.5))

    stop = threading.Event()
    seen: list[tuple[str | None, list[str]]] = []
    failures: list[BaseException] = []

    def keep_deciding() -> None:
        async def loop() -> None:
            while not stop.is_set():
                decision = await service.decide(ask(DESK_ONLY))
                seen.append((decision.route, decision.models))

        try:
            asyncio.run(loop())
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=keep_deciding) for _ in range(4)]
    for thread in threads:
        thread.start()

    async def build() -> None:
        pool = UpstreamPool()
        try:
            await build_in_background(service, config, pool)
        finally:
            await pool.aclose()

    try:
        asyncio.run(build())
        after = decide(service, DESK_ONLY)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    assert failures == []
    assert len(seen) > 20
    assert all(
        route in (None, "office_desk") and models == ["openai/gpt-4o-mini"]
        for route, models in seen
    )
    assert seen[0][0] is None
    assert after == "office_desk"


# ---- the commands --------------------------------------------------------------------------


def write_config(tmp_path: Path, llm_url: str, with_bootstrap: bool = True) -> Path:
    cache = tmp_path / "examples.yaml"
    text = f"""
version: v0.4.0
model_providers:
  - model: openai/gpt-4o-mini
    base_url: http://127.0.0.1:9
    access_key: upstream-key
    default: true
  - model: openai/writer
    base_url: {llm_url}
    access_key: {KEY}
routing_preferences:
  - name: code_generation
    description: generating new code, writing functions, or creating boilerplate
    models: [openai/gpt-4o-mini]
    examples: [write me a haskell fibonacci]
  - name: translation
    description: translating text between languages
    models: [openai/gpt-4o-mini]
  - name: office_desk
    description: tickets for the office desk
    models: [openai/gpt-4o-mini]
"""
    if with_bootstrap:
        text += f"""routing:
  no_route_examples: [good night]
  bootstrap:
    cache_path: {cache}
    model: openai/writer
    per_route: 4
    no_route: 4
"""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_routes_bootstrap_writes_the_cache_keeping_feedback_and_show_prints_it(
    llm: FakeProvider, tmp_path: Path
) -> None:
    config = write_config(tmp_path, llm.url)
    cache = tmp_path / "examples.yaml"
    write_cache(cache, CacheFile(feedback=RouteExamples(routes={"translation": ("hola?",)})))
    llm.queue(Reply(reply_text()))

    result = turnout("routes", "bootstrap", config)
    assert result.returncode == 0, result.stderr
    assert "wrote " + str(cache) in result.stdout
    assert "  office_desk      4\n" in result.stdout
    assert "  (no route)       4\n" in result.stdout
    written = read_cache(cache)
    assert written.bootstrapped.routes["office_desk"] == tuple(WRITTEN["office_desk"])
    assert written.feedback.routes == {"translation": ("hola?",)}

    shown = turnout("routes", "show", config)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert f"cache: {cache}, written by openai/writer (current)" in out
    assert "office_desk: tickets for the office desk" in out
    assert "  config examples (1):\n    - write me a haskell fibonacci" in out
    assert "  written by openai/writer (4):\n    - " + DESK_ONLY in out
    assert "  feedback (1):\n    - hola?" in out
    assert (
        "(no route): requests that must get no route\n  config examples (1):\n    - good night"
        in out
    )


def test_routes_show_marks_examples_written_for_other_routes_as_stale(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9")
    cache = tmp_path / "examples.yaml"
    written = RouteExamples(routes={"office_desk": ("the lift is stuck",), "gone": ("old",)})
    write_cache(cache, CacheFile(key="old-key", model="openai/writer", bootstrapped=written))
    out = turnout("routes", "show", config, "--cache", cache).stdout
    assert "STALE: written for other routes or another model" in out
    assert "  written by openai/writer, STALE: not used (1):\n    - the lift is stuck" in out
    assert "gone: not a configured route; its 1 written examples are unused" in out


def test_routes_bootstrap_with_flags_and_no_bootstrap_section(
    llm: FakeProvider, tmp_path: Path
) -> None:
    config = write_config(tmp_path, llm.url, with_bootstrap=False)
    out = tmp_path / "elsewhere.yaml"
    llm.queue(Reply(reply_text()))
    result = turnout(
        "routes", "bootstrap", config, "--model", "openai/writer", "--per-route", "3",
        "--no-route", "2", "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "25" not in llm.requests[0].body["messages"][0]["content"]
    assert "Write 3 realistic requests" in llm.requests[0].body["messages"][0]["content"]
    assert read_cache(out).bootstrapped.routes["translation"] == tuple(WRITTEN["translation"][:3])


def test_routes_bootstrap_refuses_without_a_model_or_a_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9", with_bootstrap=False)
    no_model = turnout("routes", "bootstrap", config, "--out", tmp_path / "x.yaml")
    assert_clean_failure(no_model)
    assert no_model.returncode == 2
    assert "give --model or set routing.bootstrap.model" in no_model.stderr
    no_file = turnout("routes", "bootstrap", config, "--model", "openai/writer")
    assert no_file.returncode == 2
    assert "give --out FILE or set routing.bootstrap.cache_path" in no_file.stderr
    unknown = turnout("routes", "bootstrap", config, "--model", "openai/nope", "--out", "x")
    assert unknown.returncode == 2
    assert "--model: unknown model 'openai/nope'" in unknown.stderr


def test_routes_bootstrap_reports_a_refusing_model_and_writes_nothing(
    llm: FakeProvider, tmp_path: Path
) -> None:
    config = write_config(tmp_path, llm.url)
    llm.queue(*[Reply("I can't help with that.")] * 3)
    result = turnout("routes", "bootstrap", config)
    assert_clean_failure(result)
    assert result.returncode == 1
    assert "no usable examples after 3 attempts" in result.stderr
    assert KEY not in result.stderr + result.stdout
    assert not (tmp_path / "examples.yaml").exists()
