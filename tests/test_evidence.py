"""What a route's description becomes before it is embedded."""

from __future__ import annotations

from turnout.routing.evidence import description_phrases, route_label, route_texts


def test_route_names_read_as_words() -> None:
    assert route_label("code_generation") == "code generation"
    assert route_label("codeGeneration") == "code generation"
    assert route_label("small-talk") == "small talk"


def test_a_description_splits_into_its_phrases() -> None:
    phrases = description_phrases("generating new code, writing functions, or creating boilerplate")
    assert phrases == ["generating new code", "writing functions", "creating boilerplate"]


def test_route_texts_hold_the_whole_description_phrases_templates_and_examples() -> None:
    texts = route_texts("math", "algebra, calculus", ["solve 2x = 4", "Solve 2x = 4 "])
    assert texts[0] == "algebra, calculus"
    assert {"math", "algebra", "calculus", "help me with algebra"} <= set(texts)
    assert texts.count("solve 2x = 4") == 1, "duplicates differing in case or spaces are dropped"
    assert "Solve 2x = 4" not in texts


def test_a_route_known_only_by_examples_still_has_its_name() -> None:
    assert route_texts("weather", "", ["will it rain?"])[:2] == ["weather", "help me with weather"]
