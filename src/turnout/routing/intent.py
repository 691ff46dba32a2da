"""Text heuristics that find the latest intent in a conversation before anything is embedded."""

from __future__ import annotations

import re

FOLLOW_UP_MAX_WORDS = 8
_MIN_PASTED_CHARS = 120
_MAX_INSTRUCTION_CHARS = 200
_LEADING_INSTRUCTION = re.compile(r"(.{8,200}?[:?])\s", re.DOTALL)


def is_follow_up(user_texts: list[str]) -> bool:
    """A short turn after earlier ones ("now in French") leans on the conversation for its task."""
    return len(user_texts) > 1 and len(user_texts[-1].split()) <= FOLLOW_UP_MAX_WORDS


def instruction(text: str) -> str | None:
    """The ask around pasted material ("Summarize this: <article>"), or None for a plain request.

    A long pasted article or stack trace dominates a sentence embedding, so the router also
    embeds the lead-in sentence (up to the first colon or question mark) and a short last line.
    """
    text = text.strip()
    if len(text) < _MIN_PASTED_CHARS:
        return None
    lines = [line for line in text.splitlines() if line.strip()]
    parts = []
    lead = _LEADING_INSTRUCTION.match(text)
    if lead and len(lead.group(1)) < len(text) * 0.7:
        parts.append(lead.group(1))
    elif len(lines) > 1 and len(lines[0]) < _MAX_INSTRUCTION_CHARS:
        parts.append(lines[0])
    if len(lines) > 1 and len(lines[-1]) < 150 and lines[-1] != lines[0]:
        parts.append(lines[-1])
    return " ".join(parts) or None
