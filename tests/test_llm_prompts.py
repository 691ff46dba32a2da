"""The router models' prompts, byte for byte, and reading what the models answer.

The golden files in tests/golden/router_prompts are the prompts Plano sends for the same
conversations (checked against the expected prompts in Plano's own tests for the shared cases).
Conversations are given as Chat Completions bodies and read by the real request parser, so tool
turns and non-text parts are dropped exactly where a client would send them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from turnout.apis import API_FORMATS
from turnout.config import RoutingPreference
from turnout.routing.conversation import Turn
from turnout.routing.llm_prompts import (
    ARCH_ROUTER_V1_TEMPLATE,
    PROMPT_FORMATS,
    TRIM_MARKER,
    RouterReplyError,
    parse_reply,
    prompt_format_for,
    trim_middle,
)

GOLDEN = Path(__file__).parent / "golden" / "router_prompts"
ROUTES = [
    RoutingPreference(name="Image generation", description="generating image", models=["m/a"]),
    RoutingPreference(
        name="code_generation",
        description="generating new code, writing functions, or creating boilerplate",
        models=["m/b"],
    ),
]
GREETING = [
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "Hello! How can I assist you today?"},
]
ASK = "given the image In style of Andy Warhol, portrait of Bart and Lisa Simpson"

CONVERSATIONS: dict[str, list[dict]] = {
    "single_turn": [{"role": "user", "content": "Write a Python function that reverses a list"}],
    "multi_turn": [
        {"role": "system", "content": "You are a helpful assistant."},
        *GREETING,
        {"role": "user", "content": ASK},
    ],
    "tool_turns": [
        {"role": "user", "content": "What's the weather like in Tokyo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "Tokyo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": "22°C"}'},
        {"role": "assistant", "content": "The current weather in Tokyo is 22°C and sunny."},
        {"role": "user", "content": 'What about in New York? Write me a haiku about it, "quoted".'},
    ],
    "non_text_parts": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "https://example.com/image.png"}},
                {"type": "text", "text": "what is this?"},
            ],
        },
        {"role": "assistant", "content": ""},
        {"role": "user", "content": ASK},
    ],
}


def turns_of(messages: list[dict]) -> tuple[Turn, ...]:
    return API_FORMATS["openai_chat"].parse_routing_request({"messages": messages}).turns


def golden(name: str) -> str:
    return (GOLDEN / f"{name}.txt").read_text("utf-8")


@pytest.mark.parametrize("prompt", sorted(PROMPT_FORMATS))
@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
def test_prompts_are_byte_identical_to_the_golden_files(prompt: str, case: str) -> None:
    rendered = PROMPT_FORMATS[prompt].prompt(turns_of(CONVERSATIONS[case]), ROUTES)  # type: ignore[index]
    assert rendered == golden(f"{prompt}.{case}")


def test_the_arch_router_prompt_is_the_model_cards_text_with_compact_json() -> None:
    rendered = PROMPT_FORMATS["arch_router_v1"].prompt(
        turns_of(CONVERSATIONS["multi_turn"]), ROUTES[:1]
    )
    expected = ARCH_ROUTER_V1_TEMPLATE.replace(
        "{routes}", '[{"name":"Image generation","description":"generating image"}]'
    ).replace(
        "{conversation}",
        '[{"role":"user","content":"hi"},'
        '{"role":"assistant","content":"Hello! How can I assist you today?"},'
        f'{{"role":"user","content":"{ASK}"}}]',
    )
    assert rendered == expected
    assert "which route is best suit with user intent" in rendered  # the card's typos stay
    assert rendered.startswith("\nYou are a helpful assistant") and rendered.endswith('"}\n')


def test_the_orchestrator_prompt_has_spaced_routes_and_an_indented_conversation() -> None:
    rendered = PROMPT_FORMATS["plano_orchestrator_v1"].prompt((Turn("user", "hi"),), ROUTES[:1])
    assert (
        '<routes>\n{"name": "Image generation", "description": "generating image", '
        '"parameters": {"type": "object", "properties": {}, "required": []}}\n</routes>'
    ) in rendered
    assert (
        '<conversation>\n[\n    {\n        "role": "user",\n        "content": "hi"\n    }\n]\n'
        in rendered
    )
    assert '{{"route": ["route_name_1", "route_name_2", "..."]}}' in rendered


def conversation_block(prompt: str) -> str:
    return prompt.split("<conversation>\n", 1)[1].split("\n</conversation>", 1)[0]


def test_arch_router_keeps_the_newest_turns_within_its_budget_and_the_overflowing_user_turn() -> (
    None
):
    arch = PROMPT_FORMATS["arch_router_v1"]
    long_ask = "please draw " + "a very detailed picture " * 600  # ~3.6k tokens, over 2048
    turns = turns_of([*GREETING, {"role": "user", "content": long_ask}])
    block = conversation_block(arch.prompt(turns, ROUTES))
    assert block == f'[{{"role":"user","content":"{long_ask}"}}]'  # kept whole, history dropped
    assert arch.prompt(turns, ROUTES) == golden("arch_router_v1.budget_overflow")


def test_arch_router_drops_an_overflowing_assistant_turn_and_everything_before_it() -> None:
    arch = PROMPT_FORMATS["arch_router_v1"]
    turns = turns_of(
        [
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "x" * 8200},
            {"role": "user", "content": "and now?"},
        ]
    )
    assert (
        conversation_block(arch.prompt(turns, ROUTES)) == '[{"role":"user","content":"and now?"}]'
    )


def test_the_orchestrator_trims_an_overflowing_user_turn_in_the_middle() -> None:
    orchestrator = PROMPT_FORMATS["plano_orchestrator_v1"]
    paste = "HEAD the task is below " + "A" * 50_000 + " TAIL so what does this do?"
    turns = turns_of([*GREETING, {"role": "user", "content": paste}])
    prompt = orchestrator.prompt(turns, ROUTES)
    block = conversation_block(prompt)
    assert "HEAD the task" in block and "so what does this do?" in block and TRIM_MARKER in block
    assert "Hello!" not in block  # no room was left for older turns
    assert len(prompt.encode()) <= 8192 * 4 + 1024
    assert prompt == golden("plano_orchestrator_v1.budget_overflow")


def test_the_orchestrator_reads_at_most_the_last_16_turns() -> None:
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn-{i:03}"}
        for i in range(40)
    ]
    prompt = PROMPT_FORMATS["plano_orchestrator_v1"].prompt(turns_of(messages), ROUTES)
    assert [f"turn-{i:03}" in prompt for i in range(40)] == [i >= 24 for i in range(40)]


@pytest.mark.parametrize(
    ("text", "limit"),
    [("a" * 20, 10), ("é" * 50, 25), ("日本語のテキスト" * 30, 40), ("ab🙂cd" * 40, 17)],
)
def test_middle_trimming_stays_within_the_limit_on_character_boundaries(
    text: str, limit: int
) -> None:
    trimmed = trim_middle(text, limit)
    assert len(trimmed.encode()) <= limit
    assert trimmed.count(TRIM_MARKER) == 1
    head, tail = trimmed.split(TRIM_MARKER)
    assert text.startswith(head) and text.endswith(tail) and head and tail


def test_middle_trimming_leaves_short_text_and_cuts_below_the_marker_size() -> None:
    assert trim_middle("hello", 5) == "hello"
    assert trim_middle("abcdefgh", 2) == "ab"
    assert trim_middle("éé", 3) == "é"


def test_the_format_follows_the_model_name_unless_configured() -> None:
    assert prompt_format_for("Arch-Router").name == "arch_router_v1"
    assert prompt_format_for("katanemo/Arch-Router-1.5B").name == "arch_router_v1"
    assert prompt_format_for("Plano-Orchestrator").name == "plano_orchestrator_v1"
    assert prompt_format_for("my-router").name == "plano_orchestrator_v1"  # Plano's default
    assert prompt_format_for("my-router", "arch_router_v1").name == "arch_router_v1"


NAMES = ["code_generation", "Image generation"]


@pytest.mark.parametrize(
    ("reply", "route"),
    [
        ('{"route": "code_generation"}', "code_generation"),
        ('{"route": ["code_generation"]}', "code_generation"),
        ('{"route": ["unknown", "Image generation", "code_generation"]}', "Image generation"),
        ('```json\n{"route": "code_generation"}\n```', "code_generation"),
        ("```\n{'route': ['Image generation']}\n```", "Image generation"),
        ("{'route': 'code_generation'}\\n", "code_generation"),
        (
            'Sure! The best route is {"route": "code_generation"} because it asks for code.',
            "code_generation",
        ),
        ("I'd say {'route': 'code_generation'}", "code_generation"),
        ('{"route": "other"}', None),
        ('{"route": []}', None),
        ('{"route": ""}', None),
        ('{"route": null}', None),
        ("{}", None),
        ('{"route": "travel_booking"}', None),
        ('{"route": ["travel_booking"]}', None),
        ("", None),
        ("   \n", None),
    ],
)
def test_replies_in_either_shape_fenced_quoted_or_in_prose(reply: str, route: str | None) -> None:
    assert parse_reply(reply, NAMES) == route


@pytest.mark.parametrize(
    "reply",
    [
        '{"route": "code_generation"',
        "code_generation",
        '{"route": 3}',
        '{"route": [1, 2]}',
        "[1, 2]",
    ],
)
def test_a_reply_that_is_not_a_decision_is_an_error(reply: str) -> None:
    with pytest.raises(RouterReplyError):
        parse_reply(reply, NAMES)
