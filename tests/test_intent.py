"""Finding the ask in a turn, and telling a follow-up from a new request."""

from __future__ import annotations

from turnout.routing.intent import instruction, is_follow_up

ARTICLE = "The council met on Tuesday to discuss bike lanes. " * 5


def test_the_lead_in_of_pasted_material_is_the_instruction() -> None:
    assert instruction(f"Summarize this article in three bullet points:\n\n{ARTICLE}") == (
        "Summarize this article in three bullet points:"
    )


def test_a_question_after_pasted_code_is_part_of_the_instruction() -> None:
    code = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n" * 3
    ask = instruction(f"{code}\nwhy is this so slow?")
    assert ask is not None and ask.endswith("why is this so slow?")


def test_a_plain_short_request_has_no_separate_instruction() -> None:
    assert instruction("Write a Python function for binary search") is None


def test_follow_ups_are_short_turns_after_earlier_ones() -> None:
    assert is_follow_up(["Write a poem about the sea", "make it shorter"])
    assert not is_follow_up(["make it shorter"])
    long_turn = (
        "Write a completely different program that parses CSV files and prints totals per column"
    )
    assert not is_follow_up(["Write a poem", long_turn])
