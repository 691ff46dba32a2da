"""Content guardrails: size limits, prompt injection and PII, on prompts and on answers (whole
or streamed). Each appends what it did to the request's `events` (for metrics and the access
log) and logs the kinds it found, never the text."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from turnout.apis.errors import RequestError
from turnout.apis.request_text import map_request_texts, request_texts
from turnout.config import Config
from turnout.config.governance import Guardrails, InjectionGuard
from turnout.governance.injection import InjectionDetector
from turnout.governance.pii import PiiKind, StreamRedactor, find_pii, redact
from turnout.providers.registry import Api
from turnout.routing.conversation import Turn

logger = logging.getLogger("turnout.governance")

TOKEN_CHARS = 4  # an input-size estimate good enough for a guardrail, with no tokenizer per model
DEFAULT_INJECTION_MESSAGE = "The request was refused: it looks like a prompt injection."


class Guards:
    def __init__(self, config: Config, injection: InjectionDetector | None) -> None:
        self.guardrails: Guardrails = config.governance.guardrails
        self.injection_guard = injection_guard(config)
        if self.injection_guard is not None and injection is None:
            raise ValueError("a prompt-injection guard is configured but no detector was given")
        self.injection = injection

    def check_size(self, api: Api, body: dict[str, Any], events: list[str]) -> None:
        size = self.guardrails.size
        if size is None:
            return
        conversation = body.get("input" if api == "openai_responses" else "messages")
        count = len(conversation) if isinstance(conversation, list) else 1
        if size.max_messages is not None and count > size.max_messages:
            events.append("size.messages.block")
            raise RequestError(
                f"The request has {count} messages; this gateway accepts at most {size.max_messages}.",
                param="messages",
                rejection="guardrail",
            )
        tokens = sum(len(text) for text in request_texts(api, body)) // TOKEN_CHARS
        if size.max_input_tokens is not None and tokens > size.max_input_tokens:
            events.append("size.tokens.block")
            raise RequestError(
                f"The prompt is about {tokens} tokens; this gateway accepts at most "
                f"{size.max_input_tokens}.",
                param="messages",
                rejection="guardrail",
            )

    async def check_injection(self, turns: tuple[Turn, ...], events: list[str]) -> None:
        guard = self.injection_guard
        if guard is None or self.injection is None:
            return
        texts = [turn.text for turn in turns if turn.role in ("user", "tool") and turn.text]
        if not texts:
            return
        detector = self.injection
        scores = await asyncio.to_thread(detector.scores, texts)
        if float(scores.max()) < detector.threshold:
            return
        events.append(f"prompt_injection.{guard.action}")
        logger.warning(
            "prompt injection detected (score %.2f); %s", float(scores.max()), guard.action
        )
        if guard.action == "block":
            raise RequestError(
                guard.message or DEFAULT_INJECTION_MESSAGE, param="messages", rejection="guardrail"
            )

    def guard_input_pii(self, api: Api, body: dict[str, Any], events: list[str]) -> dict[str, Any]:
        guard = self.guardrails.pii
        if guard is None or not guard.input:
            return body
        kinds = sorted(
            {m.kind for text in request_texts(api, body) for m in find_pii(text, guard.kinds)}
        )
        if not kinds:
            return body
        events.append(f"pii.input.{guard.action}")
        logger.warning("PII in a prompt (%s); %s", ", ".join(kinds), guard.action)
        if guard.action == "block":
            raise RequestError(
                f"The request was refused: the prompt contains personal data ({', '.join(kinds)}).",
                param="messages",
                rejection="guardrail",
            )
        if guard.action == "redact":
            return map_request_texts(api, body, lambda text: redact(text, guard.kinds)[0])
        return body

    @property
    def guards_output(self) -> bool:
        return self.guardrails.pii is not None and self.guardrails.pii.output

    def text_edit(self, events: list[str]) -> Callable[[str], str] | None:
        """What output guards do to a whole response text, or None when none applies."""
        guard = self.guardrails.pii
        if guard is None or not guard.output:
            return None
        return lambda text: self._guard_output_pii(text, events)

    def _guard_output_pii(self, text: str, events: list[str]) -> str:
        guard = self.guardrails.pii
        assert guard is not None
        redacted, matches = redact(text, guard.kinds)
        if not matches:
            return text
        kinds = sorted({m.kind for m in matches})
        events.append(f"pii.output.{guard.action}")
        logger.warning("PII in a response (%s); %s", ", ".join(kinds), guard.action)
        if guard.action == "block":
            raise OutputBlocked(kinds)
        return redacted if guard.action == "redact" else text

    def stream_editor(self, events: list[str]) -> Callable[[], StreamRedactor] | None:
        """A fresh per-text editor for streamed responses, or None when no output guard applies."""
        guard = self.guardrails.pii
        if guard is None or not guard.output:
            return None

        def editor() -> StreamRedactor:
            return _GuardedStream(events, guard.kinds, guard.action)

        return editor


def injection_guard(config: Config) -> InjectionGuard | None:
    """turnout's `prompt_injection` guard, or Plano's `prompt_guards` jailbreak guard (which
    blocks, with its own message)."""
    guard = config.governance.guardrails.prompt_injection
    if guard is not None or config.prompt_guards is None or not config.prompt_guards.jailbreak:
        return guard
    return InjectionGuard(action="block", message=config.prompt_guards.jailbreak_message)


class OutputBlocked(Exception):
    """An output guard with action `block` found what it guards against."""

    def __init__(self, kinds: Sequence[str]) -> None:
        super().__init__(", ".join(kinds))
        self.kinds = kinds

    def as_error(self) -> RequestError:
        return RequestError(
            f"The response was withheld: it contains personal data ({', '.join(self.kinds)}).",
            status=502,
            kind="api_error",
            rejection="guardrail",
        )


class _GuardedStream(StreamRedactor):
    """A stream redactor that also applies the guard's action: `block` stops the stream,
    `log` emits the text unchanged."""

    def __init__(self, events: list[str], kinds: Sequence[PiiKind], action: str) -> None:
        super().__init__(kinds)
        self._events = events
        self._action = action
        self._original: list[str] = []
        self._reported = 0

    def feed(self, piece: str) -> str:
        self._original.append(piece)
        return self._decide(super().feed(piece), piece)

    def flush(self) -> str:
        return self._decide(super().flush(), "")

    def _decide(self, redacted: str, piece: str) -> str:
        new = self.found[self._reported :]
        if new:
            self._reported = len(self.found)
            self._events.append(f"pii.output.{self._action}")
            logger.warning("PII in a streamed response (%s); %s", ", ".join(new), self._action)
            if self._action == "block":
                raise OutputBlocked(list(dict.fromkeys(new)))
        return redacted if self._action == "redact" else piece
