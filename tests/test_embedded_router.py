"""The embedded router's decisions on a fixed set: routes, follow-ups, chit-chat and no-route."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from turnout.config import Config
from turnout.routing.conversation import Turn
from turnout.routing.embedded import EmbeddedRouter


@dataclass
class Route:
    name: str
    description: str
    examples: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=lambda: ["openai/gpt-4o"])


TASK_ROUTES = [
    Route(
        "code_generation",
        "generating new code, writing functions, scripts or classes, or creating boilerplate",
    ),
    Route(
        "math",
        "solving math problems, equations, calculations, probability or statistics questions",
    ),
    Route("translation", "translating text between languages"),
    Route(
        "summarization",
        "summarizing articles, documents, meeting notes or long text into key points",
    ),
]


def user(text: str) -> list[Turn]:
    return [Turn("user", text)]


def conversation(*texts: str) -> list[Turn]:
    roles = ["user", "assistant"]
    return [Turn(roles[i % 2], text) for i, text in enumerate(texts)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Write a Python function that checks whether a number is prime", "code_generation"),
        ("Create a bash script that backs up my home folder every night", "code_generation"),
        ("Solve 3x + 7 = 22 for x", "math"),
        ("What's the probability of rolling two sixes with two dice?", "math"),
        ("Translate 'where is the train station' into Spanish", "translation"),
        (
            "Summarize these meeting notes into three key points: we agreed to ship on Friday",
            "summarization",
        ),
    ],
)
def test_routes_clear_requests(router: EmbeddedRouter, text: str, expected: str) -> None:
    assert router.classify(user(text), TASK_ROUTES).route == expected


@pytest.mark.parametrize("text", ["hi!", "thanks, that was helpful", "good night", "who are you?"])
def test_chit_chat_gets_no_route(router: EmbeddedRouter, text: str) -> None:
    result = router.classify(user(text), TASK_ROUTES)
    assert result.route is None
    assert result.reason


def test_the_seed_demo_config_routes_its_prompts(
    router: EmbeddedRouter, demo_config: Config
) -> None:
    routes = demo_config.routing_preferences
    assert (
        router.classify(user("Write a quicksort implementation in Go"), routes).route
        == "code_generation"
    )
    analysis = "Analyze the trade-offs between microservices and monolithic architecture"
    assert router.classify(user(analysis), routes).route == "complex_reasoning"
    assert router.classify(user("What is the capital of France?"), routes).route is None


def test_a_short_follow_up_inherits_the_conversations_task(router: EmbeddedRouter) -> None:
    turns = conversation(
        "Write a Python function that downloads a list of URLs",
        "```python\ndef download_all(urls): ...\n```",
        "can you parallelize it?",
    )
    assert router.classify(turns, TASK_ROUTES).route == "code_generation"
    assert router.classify(user("can you parallelize it?"), TASK_ROUTES).route != "code_generation"


def test_a_follow_up_that_names_a_new_task_switches_route(router: EmbeddedRouter) -> None:
    turns = conversation(
        "Solve x^2 - 5x + 6 = 0",
        "x = 2 or x = 3",
        "Now translate your answer into German please",
    )
    assert router.classify(turns, TASK_ROUTES).route == "translation"


def test_thanks_after_a_task_is_no_route(router: EmbeddedRouter) -> None:
    turns = conversation("Solve 2x = 10", "x = 5", "thanks!")
    assert router.classify(turns, TASK_ROUTES).route is None


def test_the_ask_around_pasted_text_decides(router: EmbeddedRouter) -> None:
    article = " ".join(
        ["The city council met on Tuesday to discuss the new bike lanes downtown."] * 6
    )
    result = router.classify(
        user(f"Summarize this article in two sentences:\n\n{article}"), TASK_ROUTES
    )
    assert result.route == "summarization"


def test_system_and_assistant_turns_are_not_the_intent(router: EmbeddedRouter) -> None:
    turns = [
        Turn("system", "You are a translator. Translate everything the user says."),
        Turn("user", "Solve 12 * 13"),
    ]
    assert router.classify(turns, TASK_ROUTES).route == "math"


def test_no_user_text_or_no_routes_is_no_route(router: EmbeddedRouter) -> None:
    assert router.classify([Turn("system", "be nice")], TASK_ROUTES).route is None
    assert router.classify(user("Write a function"), []).route is None


def test_examples_sharpen_a_route(router: EmbeddedRouter) -> None:
    vague = [
        Route("alpha", "things of the first kind"),
        Route("beta", "things of the second kind"),
    ]
    query = user("What's the weather going to be like in Paris tomorrow?")
    sharpened = [
        Route(
            "alpha",
            "things of the first kind",
            ["will it rain in London today?", "weather forecast for Berlin"],
        ),
        Route("beta", "things of the second kind", ["play some jazz", "next song please"]),
    ]
    before = router.classify(query, vague)
    after = router.classify(query, sharpened)
    assert after.route == "alpha"
    assert (
        after.scores["alpha"] - after.scores["beta"]
        > before.scores["alpha"] - before.scores["beta"]
    )


def test_a_small_talk_route_claims_greetings(router: EmbeddedRouter) -> None:
    routes = [
        *TASK_ROUTES,
        Route(
            "small_talk",
            "small talk: greetings, thanks, goodbyes, jokes, questions about the assistant",
        ),
    ]
    assert router.classify(user("hello"), routes).route == "small_talk"
    assert router.classify(user("Solve 3x + 7 = 22"), routes).route == "math"


def test_scores_cover_every_route(router: EmbeddedRouter) -> None:
    result = router.classify(user("Solve 2 + 2"), TASK_ROUTES)
    assert set(result.scores) == {r.name for r in TASK_ROUTES}
    assert max(result.scores, key=result.scores.__getitem__) == "math"


def test_route_sets_are_indexed_once_and_cached_by_content(
    router: EmbeddedRouter, monkeypatch
) -> None:
    routes = [
        Route("cache_probe", "writing haiku about autumn leaves"),
        Route("other", "tax questions"),
    ]
    router.prepare(routes)
    calls = []
    monkeypatch.setattr(router, "_build_index", lambda r: calls.append(r))
    router.classify(user("a haiku about leaves"), [Route(r.name, r.description) for r in routes])
    assert calls == []


def test_decisions_are_deterministic(router: EmbeddedRouter) -> None:
    turns = user("Write a SQL query that counts orders per customer")
    first = router.classify(turns, TASK_ROUTES)
    assert all(router.classify(turns, TASK_ROUTES) == first for _ in range(3))
    assert np.isfinite(list(first.scores.values())).all()


def test_preparing_no_routes_is_a_no_op(router: EmbeddedRouter) -> None:
    """`turnout up` on a config without routing_preferences must start (it only proxies)."""
    router.prepare([])
    assert router.classify(user("Write a function"), []).route is None
