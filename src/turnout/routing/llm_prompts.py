"""The prompts router models were trained on, and reading their replies.

Byte-exact with what Plano sends (katanemo/plano, brightstaff's router_model_v1.rs and
orchestrator_model_v1.rs), typos and the literal `{{` included: a router model is only as
accurate as its prompt is faithful. Token counts are Plano's estimate, UTF-8 bytes / 4.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from turnout.routing.conversation import Turn
from turnout.routing.embedded import RouteSpec

PromptName = Literal["arch_router_v1", "plano_orchestrator_v1"]

TOKEN_BYTES = 4
TRIM_MARKER = "…"

ARCH_ROUTER_V1_TEMPLATE = """
You are a helpful assistant designed to find the best suited route.
You are provided with route description within <routes></routes> XML tags:
<routes>
{routes}
</routes>

<conversation>
{conversation}
</conversation>

Your task is to decide which route is best suit with user intent on the conversation in <conversation></conversation> XML tags.  Follow the instruction:
1. If the latest intent from user is irrelevant or user intent is full filled, response with other route {"route": "other"}.
2. You must analyze the route descriptions and find the best match route for user latest intent.
3. You only response the name of the route that best matches the user's request, use the exact name in the <routes></routes>.

Based on your analysis, provide your response in the following JSON formats if you decide to match any route:
{"route": "route_name"}
"""

PLANO_ORCHESTRATOR_V1_TEMPLATE = """
You are a helpful assistant that selects the most suitable routes based on user intent.
You are provided with a list of available routes enclosed within <routes></routes> XML tags:
<routes>
{routes}
</routes>

You are also given the conversation context enclosed within <conversation></conversation> XML tags:
<conversation>
{conversation}
</conversation>

## Instructions
1. Analyze the latest user intent from the conversation.
2. Compare it against the available routes to find which routes can help fulfill the request.
3. Respond only with the exact route names from <routes>.
4. If no routes can help or the intent is already fulfilled, return an empty list.

## Response Format
Return your answer strictly in JSON as follows:
{{"route": ["route_name_1", "route_name_2", "..."]}}
If no routes are needed, return an empty list for `route`.
"""

ORCHESTRATOR_MAX_TURNS = 16
_NO_ROUTE_NAMES = frozenset({"", "other"})
# Plano-Orchestrator was trained on tool-style route entries with an empty parameter schema.
_EMPTY_PARAMETERS = {"type": "object", "properties": {}, "required": []}


class RouterReplyError(ValueError):
    """The router model answered with something that is not a routing decision."""


@dataclass(frozen=True, slots=True)
class PromptFormat:
    """How one router model family is asked: its prompt, and its history budget in tokens."""

    name: PromptName
    history_budget: int
    render: Callable[[Sequence[Turn], Sequence[RouteSpec], int], str]

    def prompt(self, turns: Sequence[Turn], routes: Sequence[RouteSpec]) -> str:
        return self.render(turns, routes, self.history_budget)


def _byte_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _tokens(text: str) -> int:
    return _byte_len(text) // TOKEN_BYTES


def _spoken(turns: Sequence[Turn]) -> list[Turn]:
    """User and assistant turns with text: system prompts, tool traffic and empty turns say nothing
    about what the user wants next."""
    return [turn for turn in turns if turn.role in ("user", "assistant") and turn.text]


def _fill(template: str, routes: str, conversation: str) -> str:
    # Two replacements in this order, as Plano does (a route text naming `{conversation}` is
    # filled too): the prompt must match byte for byte.
    return template.replace("{routes}", routes).replace("{conversation}", conversation)


def _messages(turns: Sequence[Turn]) -> list[dict[str, str]]:
    return [{"role": turn.role, "content": turn.text} for turn in turns]


def _arch_router_history(turns: Sequence[Turn], budget: int) -> list[Turn]:
    """Newest turns that fit the budget; the turn that overflows it is kept whole if the user's."""
    spoken = _spoken(turns)
    used = _tokens(ARCH_ROUTER_V1_TEMPLATE)
    kept: list[Turn] = []
    for turn in reversed(spoken):
        used += _tokens(turn.text)
        if used > budget:
            if turn.role == "user":
                kept.append(turn)
            break
        kept.append(turn)
    if not kept and spoken:
        kept.append(spoken[-1])
    return kept[::-1]


def _render_arch_router(turns: Sequence[Turn], routes: Sequence[RouteSpec], budget: int) -> str:
    compact = {"separators": (",", ":"), "ensure_ascii": False}
    route_list = [{"name": route.name, "description": route.description} for route in routes]
    conversation = _messages(_arch_router_history(turns, budget))
    return _fill(
        ARCH_ROUTER_V1_TEMPLATE,
        json.dumps(route_list, **compact),  # type: ignore[arg-type]
        json.dumps(conversation, **compact),  # type: ignore[arg-type]
    )


def _is_char_start(data: bytes, index: int) -> bool:
    return index <= 0 or index >= len(data) or (data[index] & 0xC0) != 0x80


def trim_middle(text: str, max_bytes: int) -> str:
    """At most `max_bytes` of UTF-8: about 60% from the start and 40% from the end around an
    ellipsis, since users frame a task first and ask at the end of a long paste."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return text
    marker = TRIM_MARKER.encode()
    if max_bytes <= len(marker):
        end = max_bytes
        while not _is_char_start(data, end):
            end -= 1
        return data[:end].decode("utf-8", "surrogatepass")
    available = max_bytes - len(marker)
    head = available * 3 // 5
    while not _is_char_start(data, head):
        head -= 1
    tail = max(len(data) - (available - head), 0)
    while not _is_char_start(data, tail):
        tail += 1
    return (data[:head] + marker + data[tail:]).decode("utf-8", "surrogatepass")


def _orchestrator_history(turns: Sequence[Turn], budget: int) -> list[Turn]:
    """The last 16 spoken turns, newest first within the budget; a user turn that overflows it is
    trimmed in the middle to the room left."""
    recent = _spoken(turns)[-ORCHESTRATOR_MAX_TURNS:]
    used = _tokens(PLANO_ORCHESTRATOR_V1_TEMPLATE)
    kept: list[Turn] = []
    for turn in reversed(recent):
        cost = _tokens(turn.text)
        if used + cost > budget:
            room = max(budget - used, 0)
            if turn.role == "user" and room > 0:
                kept.append(Turn("user", trim_middle(turn.text, room * TOKEN_BYTES)))
            break
        used += cost
        kept.append(turn)
    if not kept and recent:
        kept.append(recent[-1])
    return kept[::-1]


def _render_plano_orchestrator(
    turns: Sequence[Turn], routes: Sequence[RouteSpec], budget: int
) -> str:
    route_lines = "\n".join(
        json.dumps(
            {
                "name": route.name,
                "description": route.description,
                "parameters": _EMPTY_PARAMETERS,
            },
            ensure_ascii=False,
        )
        for route in routes
    )
    conversation = _messages(_orchestrator_history(turns, budget))
    return _fill(
        PLANO_ORCHESTRATOR_V1_TEMPLATE,
        route_lines,
        json.dumps(conversation, indent=4, ensure_ascii=False),
    )


PROMPT_FORMATS: dict[PromptName, PromptFormat] = {
    "arch_router_v1": PromptFormat("arch_router_v1", 2048, _render_arch_router),
    "plano_orchestrator_v1": PromptFormat(
        "plano_orchestrator_v1", 8192, _render_plano_orchestrator
    ),
}


def prompt_format_for(model: str, configured: PromptName | None = None) -> PromptFormat:
    """The configured format, else the one the model's name implies; Plano's current default
    (the orchestrator's) for any other model."""
    if configured is not None:
        return PROMPT_FORMATS[configured]
    if "arch-router" in model.lower():
        return PROMPT_FORMATS["arch_router_v1"]
    return PROMPT_FORMATS["plano_orchestrator_v1"]


_FENCE = re.compile(r"```[A-Za-z]*")


def _objects(text: str) -> Iterator[dict[str, Any]]:
    """Each JSON object found in `text`, as written or with single quotes made double."""
    decoder = json.JSONDecoder()
    for candidate in (text, text.replace("'", '"')):
        for start in (m.start() for m in re.finditer(r"\{", candidate)):
            try:
                value, _ = decoder.raw_decode(candidate, start)
            except ValueError:
                continue
            if isinstance(value, dict):
                yield value


def parse_reply(content: str, route_names: Sequence[str]) -> str | None:
    """The route a router model chose, or None for no route.

    Both reply shapes are read, `{"route": "name"}` (Arch-Router, "other" meaning none) and
    `{"route": ["a", ...]}` (Plano-Orchestrator, the first known name wins), inside code fences
    or prose. A name that is not one of `route_names` means no route, as in Plano.
    """
    text = _FENCE.sub("", content).replace("\\n", "").strip()
    if not text:
        return None
    reply = next(_objects(text), None)
    if reply is None:
        raise RouterReplyError("the reply holds no JSON object")
    chosen = reply.get("route")
    if chosen is None or isinstance(chosen, str):
        names = [] if chosen in _NO_ROUTE_NAMES or chosen is None else [chosen]
    elif isinstance(chosen, list) and all(isinstance(name, str) for name in chosen):
        names = chosen
    else:
        raise RouterReplyError("`route` is neither a name nor a list of names")
    return next((name for name in names if name in route_names), None)
