"""Turning a route's plain-language description into texts an encoder can match requests against.

A description like "generating new code, writing functions, or creating boilerplate" is a list of
phrases, not a request; users write requests. So each route is represented by its name, its whole
description, each phrase, and the phrases set in request-like templates, plus any operator examples.
"""

from __future__ import annotations

import re

from turnout.routing.examples import unique

_SPLIT = re.compile(
    r"\s*(?:[,;:()]|\band\b|\bor\b|\betc\b\.?|\be\.g\.|\bsuch as\b|\bincluding\b)\s*"
)
_TEMPLATES = ("help me with {}", "I need {}", "can you do {} for me")
_MIN_PHRASE_CHARS = 3


def route_label(name: str) -> str:
    """`code_generation` and `codeGeneration` both read as "code generation"."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)
    return re.sub(r"[_\-./]+", " ", spaced).strip().lower()


def description_phrases(description: str) -> list[str]:
    phrases = (p.strip(" .!?\"'") for p in _SPLIT.split(description))
    return list(unique(p for p in phrases if len(p) >= _MIN_PHRASE_CHARS))


def route_texts(name: str, description: str, examples: list[str]) -> list[str]:
    """Every text that stands for the route; examples count as they are."""
    label = route_label(name)
    phrases = description_phrases(description)
    seeds = unique([label, *phrases])
    templated = [template.format(seed) for seed in seeds for template in _TEMPLATES]
    whole = [description.strip()] if description.strip() else []
    return list(unique([*whole, *seeds, *templated, *examples]))
