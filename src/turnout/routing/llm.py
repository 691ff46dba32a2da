"""The LLM router: a router model (Arch-Router, Plano-Orchestrator) behind an OpenAI-compatible
endpoint, asked for each decision in the prompt format it was trained on.

Unlike Plano, a router failure never fails the request: the call has a deadline, any failure
raises RouterUnavailable (the embedded router then decides), and a circuit breaker stops
calling a router that keeps failing until a probe succeeds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

import aiohttp

from turnout.config import Config
from turnout.providers.upstream import Target, UpstreamPool, target_for
from turnout.routing.breaker import CircuitBreaker
from turnout.routing.conversation import Turn
from turnout.routing.embedded import Classification, RouteSpec
from turnout.routing.llm_prompts import (
    PromptFormat,
    RouterReplyError,
    parse_reply,
    prompt_format_for,
)

logger = logging.getLogger("turnout.router")

# Plano's sampling for both router models: as close to greedy as vLLM allows everywhere.
ROUTER_TEMPERATURE = 0.01


class RouterUnavailable(Exception):
    """The LLM router gave no decision; `reason` says why (timeout, error, invalid_reply,
    circuit_open) and is reported as the decision's `router_fallback`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LlmRouter:
    kind = "llm"

    def __init__(self, config: Config, pool: UpstreamPool) -> None:
        """Raises TargetError when the configured router model cannot be called."""
        model_id = config.llm_router_model
        if model_id is None:
            raise ValueError("overrides.llm_routing_model names no configured model")
        self.target: Target = target_for(config, model_id, client_key=None)
        settings = config.routing.llm
        self.prompt: PromptFormat = prompt_format_for(
            self.target.model, config.overrides.llm_routing_prompt
        )
        self.timeout = settings.timeout_seconds
        self.breaker = CircuitBreaker(settings.failures_to_open, settings.cooldown_seconds)
        self._pool = pool

    @property
    def model_id(self) -> str:
        return self.target.model_id

    def request_body(self, turns: Sequence[Turn], routes: Sequence[RouteSpec]) -> dict[str, Any]:
        """One user message holding the whole prompt, as Plano sends it."""
        return {
            "model": self.target.model,
            "messages": [{"role": "user", "content": self.prompt.prompt(turns, routes)}],
            "temperature": ROUTER_TEMPERATURE,
        }

    async def classify(self, turns: Sequence[Turn], routes: Sequence[RouteSpec]) -> Classification:
        if not self.breaker.allow():
            raise RouterUnavailable("circuit_open")
        try:
            content = await self._ask(self.request_body(turns, routes))
            route = parse_reply(content, [route.name for route in routes])
        except asyncio.CancelledError:
            self.breaker.abandoned()
            raise
        except RouterUnavailable:
            self._failed()
            raise
        except RouterReplyError as exc:
            logger.warning("LLM router %s: unreadable reply (%s)", self.model_id, exc)
            self._failed()
            raise RouterUnavailable("invalid_reply") from exc
        self.breaker.succeeded()
        reason = f"{self.model_id} chose {route!r}" if route else f"{self.model_id} chose no route"
        return Classification(route=route, scores={}, reason=reason)

    def _failed(self) -> None:
        was_open = self.breaker.state == "open"
        self.breaker.failed()
        if not was_open and self.breaker.state == "open":
            logger.warning(
                "LLM router %s: circuit open, the embedded router decides for %gs",
                self.model_id,
                self.breaker.cooldown,
            )

    async def _ask(self, body: dict[str, Any]) -> str:
        """The reply's message content; any failure to get one is RouterUnavailable."""
        session = self._pool.session_for(self.target.url)
        headers = {**self.target.headers, "content-type": "application/json"}
        try:
            async with asyncio.timeout(self.timeout):
                async with session.post(
                    self.target.url, data=json.dumps(body).encode(), headers=headers
                ) as response:
                    if response.status != 200:
                        logger.warning("LLM router %s: HTTP %d", self.model_id, response.status)
                        raise RouterUnavailable("error")
                    reply = await response.json(content_type=None)
        except TimeoutError as exc:
            logger.warning("LLM router %s: no reply in %gs", self.model_id, self.timeout)
            raise RouterUnavailable("timeout") from exc
        except (aiohttp.ClientError, ValueError) as exc:
            logger.warning("LLM router %s: %s", self.model_id, type(exc).__name__)
            raise RouterUnavailable("error") from exc
        return _message_content(reply)


def _message_content(reply: object) -> str:
    try:
        content = reply["choices"][0]["message"]["content"]  # type: ignore[index]
    except (KeyError, IndexError, TypeError) as exc:
        raise RouterReplyError("not a chat completion") from exc
    if content is None:
        return ""
    if not isinstance(content, str):
        raise RouterReplyError("the message content is not text")
    return content
