"""Reading OpenAI chat completions and their chunk streams, for translators to other APIs."""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from typing import Any

logger = logging.getLogger("turnout.translate")

JsonObject = dict[str, Any]

_REASONING_KEYS = ("reasoning_content", "reasoning")  # vLLM/DeepSeek, then OpenRouter/newer vLLM


def first_choice(body: JsonObject) -> JsonObject:
    """Choice 0: the gateway never asks for more than one."""
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def reasoning_text(message: JsonObject) -> str:
    """The reasoning text some servers send beside the answer, under one of two names."""
    for key in _REASONING_KEYS:
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


class ChatChunkTranslator(ABC):
    """Parses chunks, [DONE], usage and errors once; subclasses say what each becomes.

    Only choice 0 is followed (a gateway asks for one); the last usage seen is the total.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self._ended = False
        self._finish_reason: object = None
        self._usage: object = None

    @property
    def complete(self) -> bool:
        """The client's stream is over: its closing event, or an error event, was sent."""
        return self._ended

    def event(self, name: str, data: str) -> list[bytes]:
        """One upstream SSE event as zero or more client frames."""
        if self._ended:
            return []
        if data.strip() == "[DONE]":
            return self._close()
        try:
            chunk = json.loads(data)
        except ValueError:
            chunk = None
        if not isinstance(chunk, dict):
            if name == "error":
                return self._error(data)
            logger.warning("skipped an upstream stream event that is not a JSON object")
            return []
        if name == "error" or chunk.get("error") is not None:
            return self._error(chunk.get("error", chunk))
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        frames = self._start(chunk)
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                delta = choice.get("delta")
                frames.extend(self._delta(delta if isinstance(delta, dict) else {}))
                if choice.get("finish_reason") is not None:
                    self._finish_reason = choice["finish_reason"]
        return frames

    def finish(self) -> list[bytes]:
        """The upstream ended: close if it said why it stopped, even without [DONE]."""
        if self._ended or self._finish_reason is None:
            return []
        return self._close()

    @abstractmethod
    def _start(self, chunk: JsonObject) -> list[bytes]:
        """The client's opening events, once (later calls return nothing)."""

    @abstractmethod
    def _delta(self, delta: JsonObject) -> list[bytes]:
        """Frames for one delta of choice 0."""

    @abstractmethod
    def _close(self) -> list[bytes]:
        """The closing frames; must set `_ended`."""

    @abstractmethod
    def _error(self, error: object) -> list[bytes]:
        """An error frame that ends the stream; must set `_ended`."""
