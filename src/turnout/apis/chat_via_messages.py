"""OpenAI Chat Completions clients served by an Anthropic Messages provider.

When routing sends a Chat Completions request to a Claude model, `request` rewrites the body
into a Messages request, `response` rewrites the answer back, and `StreamTranslator` rewrites
the SSE stream event by event. Everything here is JSON in, JSON out; the proxy does the I/O.

What the Messages API cannot express is dropped rather than guessed at (the provider would
reject an unknown field), and each drop is logged once on `turnout.translate`, so an operator
can see why a parameter had no effect.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from turnout.apis import openai_chat
from turnout.apis.errors import RequestError
from turnout.routing.conversation import ROUTING_FIELDS

Json = dict[str, Any]

logger = logging.getLogger("turnout.translate")

DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI clients often omit it

# Thinking budget for each OpenAI reasoning effort ("none" asks for no thinking). Anthropic's
# smallest budget is 1024 tokens, and the budget must stay below max_tokens.
_THINKING_BUDGETS = {
    "minimal": 1024,
    "low": 2048,
    "medium": 4096,
    "high": 8192,
    "xhigh": 16384,
    "max": 24576,
}
_MIN_THINKING_BUDGET = 1024
_MIN_TOP_P_WITH_THINKING = 0.95

# Fields this module translates.
_TRANSLATED = frozenset(
    {
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "temperature",
        "top_p",
        "top_k",
        "stream",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning_effort",
        "user",
        "safety_identifier",
    }
)
# Fields the gateway itself reads; they never reach a provider, so dropping them is no loss.
_READ_BY_GATEWAY = frozenset({"model", "stream_options"}) | ROUTING_FIELDS
# Values that ask for nothing beyond what Anthropic does anyway: dropped without a warning.
_NO_OP_VALUES: dict[str, tuple[object, ...]] = {
    "n": (None, 1),
    "presence_penalty": (None, 0),
    "frequency_penalty": (None, 0),
    "logit_bias": (None, {}),
    "logprobs": (None, False),
    "store": (None, False),
    "response_format": (None, {"type": "text"}),
}
_NO_EQUIVALENT = "dropped: Anthropic Messages has no equivalent"

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_DATA_URL = re.compile(r"data:([^;,]+)[^,]*;base64,(.*)", re.DOTALL)
# Anthropic requires the first message to be the user's; a conversation that opens with an
# assistant turn gets this neutral one in front.
_OPENING_TURN = "."


def request(body: Json, model: str) -> Json:
    """An OpenAI chat request body -> the Anthropic Messages request body for `model`."""
    notes: dict[str, str] = {}
    messages, system = _conversation(body.get("messages") or [], notes)
    out: Json = {"model": model, "messages": messages}
    if system:
        out["system"] = system
    tools = [spec for tool in body.get("tools") or [] if (spec := _tool(tool, notes))]
    if tools:
        out["tools"] = tools
        tool_choice = _tool_choice(body, notes)
        if tool_choice is not None:
            out["tool_choice"] = tool_choice
    requested = _requested_max_tokens(body)
    budget = _thinking_budget(body, messages, out.get("tool_choice"), requested, notes)
    out["max_tokens"] = DEFAULT_MAX_TOKENS if requested is None else requested
    if budget is not None:
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if requested is None:  # the default is for the answer; thinking gets room of its own
            out["max_tokens"] += budget
    out.update(_sampling(body, thinking=budget is not None, notes=notes))
    stop_sequences = _stop_sequences(body.get("stop"), notes)
    if stop_sequences:
        out["stop_sequences"] = stop_sequences
    if body.get("stream") is not None:
        out["stream"] = bool(body["stream"])
    user_id = body.get("user") or body.get("safety_identifier")
    if user_id:
        out["metadata"] = {"user_id": user_id}
    for name, value in body.items():
        if name in _TRANSLATED or name in _READ_BY_GATEWAY:
            continue
        if value not in _NO_OP_VALUES.get(name, (None,)):
            notes[name] = _NO_EQUIVALENT
    for name, note in notes.items():
        logger.warning("chat -> messages: `%s` %s", name, note)
    return out


def _conversation(messages: list[Json], notes: dict[str, str]) -> tuple[list[Json], str | None]:
    """Anthropic's turns and system prompt.

    Anthropic takes the system prompt apart from the turns, wants strictly alternating
    user/assistant turns that open with the user, and carries tool results in user turns.
    """
    system: list[str] = []
    turns: list[Json] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(block["text"] for block in _text_blocks(message.get("content")))
            continue
        if role == "assistant":
            blocks = _assistant_blocks(message, notes)
        elif role == "tool":
            blocks = [_tool_result(message)]
        else:  # user, and the legacy `function` role, whose result has no call id to pair
            blocks = _user_blocks(message.get("content"), notes)
        if not blocks:  # Anthropic rejects empty turns; an empty message says nothing
            continue
        wire_role = "assistant" if role == "assistant" else "user"
        if turns and turns[-1]["role"] == wire_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": wire_role, "content": blocks})
    for turn in turns:  # Anthropic wants a user turn's tool results before anything else
        turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    if turns and turns[0]["role"] == "assistant":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": _OPENING_TURN}]})
    return turns, "\n\n".join(system) or None


def _text_blocks(content: str | list[Json] | None) -> list[Json]:
    """The non-empty text of a string or of text parts (Anthropic rejects empty text blocks)."""
    if isinstance(content, str):
        texts = [content]
    else:
        texts = [part.get("text", "") for part in content or [] if part.get("type") == "text"]
    return [{"type": "text", "text": text} for text in texts if text]


def _user_blocks(content: str | list[Json] | None, notes: dict[str, str]) -> list[Json]:
    if not isinstance(content, list):
        return _text_blocks(content)
    blocks: list[Json] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            blocks.extend(_text_blocks([part]))
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url") or {}))
        else:
            notes[f"messages[].content[type={kind}]"] = _NO_EQUIVALENT
    return blocks


def _image(image_url: Json) -> Json:
    """A data URL becomes inline base64; any other URL is one Anthropic fetches itself."""
    url = image_url.get("url", "")
    data_url = _DATA_URL.fullmatch(url)
    if data_url:
        source = {"type": "base64", "media_type": data_url[1], "data": data_url[2]}
    else:
        source = {"type": "url", "url": url}
    return {"type": "image", "source": source}


def _assistant_blocks(message: Json, notes: dict[str, str]) -> list[Json]:
    content = message.get("content")
    if isinstance(content, list):  # a refusal the model gave is still what it said
        content = [
            {"type": "text", "text": part.get("refusal", "")}
            if part.get("type") == "refusal"
            else part
            for part in content
        ]
    blocks = _text_blocks(content)
    for call in message.get("tool_calls") or []:
        function = call.get("function")
        if call.get("type", "function") != "function" or not isinstance(function, dict):
            notes[f"messages[].tool_calls[type={call.get('type')}]"] = _NO_EQUIVALENT
            continue
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": _tool_input(function.get("arguments")),
            }
        )
    return blocks


def _tool_input(arguments: object) -> Json:
    """OpenAI's arguments are JSON text; Anthropic's input must be an object.

    Text that is not a JSON object is kept under `_raw` rather than lost, so the model still
    sees what it sent.
    """
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return {"_raw": arguments}
    return parsed if isinstance(parsed, dict) else {"_raw": arguments}


def _tool_result(message: Json) -> Json:
    block: Json = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
    content = message.get("content")
    if isinstance(content, list):
        block["content"] = _text_blocks(content)
    elif content:
        block["content"] = content
    return block


def _tool(tool: Json, notes: dict[str, str]) -> Json | None:
    function = tool.get("function")
    if tool.get("type", "function") != "function" or not isinstance(function, dict):
        notes[f"tools[type={tool.get('type')}]"] = _NO_EQUIVALENT
        return None
    spec: Json = {
        "name": function.get("name"),
        # OpenAI lets a function without arguments omit its schema; Anthropic requires one.
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        spec["description"] = function["description"]
    if function.get("strict"):
        notes["tools[].function.strict"] = _NO_EQUIVALENT
    return spec


def _tool_choice(body: Json, notes: dict[str, str]) -> Json | None:
    choice = body.get("tool_choice")
    mapped: Json | None = None
    if choice in ("auto", "none"):
        mapped = {"type": choice}
    elif choice == "required":
        mapped = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        mapped = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    elif choice is not None:
        notes["tool_choice"] = _NO_EQUIVALENT
    if body.get("parallel_tool_calls") is False:
        mapped = mapped or {"type": "auto"}
        if mapped["type"] != "none":
            mapped["disable_parallel_tool_use"] = True
    return mapped


def _requested_max_tokens(body: Json) -> int | None:
    """`max_completion_tokens` replaced the deprecated `max_tokens`; both cap the whole output."""
    for name in ("max_completion_tokens", "max_tokens"):
        if body.get(name) is not None:
            return int(body[name])
    return None


def _thinking_budget(
    body: Json,
    messages: list[Json],
    tool_choice: Json | None,
    requested: int | None,
    notes: dict[str, str],
) -> int | None:
    """The thinking budget for `reasoning_effort`, or None when there is none to give.

    Uses the budgeted `{"type": "enabled"}` form, which Claude 3.7 to 4.6 accept; Opus 4.7
    and later take only `{"type": "adaptive"}`, which older models refuse, and nothing here
    knows which model it is.
    """
    effort = body.get("reasoning_effort")
    if effort is None or effort == "none":
        return None
    budget = _THINKING_BUDGETS.get(effort)
    if requested is not None and budget is not None:
        budget = min(budget, requested - 1)  # OpenAI's cap covers reasoning too, as here
    if budget is None:
        note = f"dropped: no Anthropic thinking budget matches {effort!r}"
    elif tool_choice is not None and tool_choice["type"] in ("any", "tool"):
        note = "dropped: Anthropic does not allow thinking with a forced tool choice"
    elif _continues_tool_use(messages):
        note = (
            "dropped: Anthropic needs the signed thinking that preceded the pending tool "
            "call, which Chat Completions clients do not send back"
        )
    elif budget < _MIN_THINKING_BUDGET:
        note = (
            f"dropped: max tokens {requested} leave no room for Anthropic's minimum "
            f"thinking budget of {_MIN_THINKING_BUDGET}"
        )
    else:
        return budget
    notes["reasoning_effort"] = note
    return None


def _continues_tool_use(messages: list[Json]) -> bool:
    """Whether the request answers tool calls, i.e. continues the model's last turn."""
    return bool(messages) and any(
        block["type"] == "tool_result" for block in messages[-1]["content"]
    )


def _sampling(body: Json, *, thinking: bool, notes: dict[str, str]) -> Json:
    """temperature, top_p and top_k within Anthropic's tighter rules.

    Anthropic caps temperature at 1, allows only temperature 1, top_p >= 0.95 and no top_k
    with thinking, and newer models refuse temperature and top_p together.
    """
    sampling: Json = {}
    temperature = body.get("temperature")
    if temperature is not None:
        if thinking and temperature != 1:
            notes["temperature"] = "dropped: Anthropic allows only temperature 1 with thinking"
        elif temperature > 1:
            notes["temperature"] = f"clamped from {temperature} to 1, Anthropic's maximum"
            sampling["temperature"] = 1.0
        else:
            sampling["temperature"] = temperature
    top_p = body.get("top_p")
    if top_p is not None:
        if thinking and top_p < _MIN_TOP_P_WITH_THINKING:
            notes["top_p"] = "dropped: Anthropic allows top_p only from 0.95 with thinking"
        elif "temperature" in sampling:
            notes["top_p"] = "dropped: newer Claude models refuse temperature and top_p together"
        else:
            sampling["top_p"] = top_p
    if body.get("top_k") is not None:
        if thinking:
            notes["top_k"] = "dropped: Anthropic does not allow top_k with thinking"
        else:
            sampling["top_k"] = body["top_k"]
    return sampling


def _stop_sequences(stop: str | list[str] | None, notes: dict[str, str]) -> list[str]:
    """OpenAI's `stop`, less the whitespace-only sequences Anthropic rejects."""
    sequences = [stop] if isinstance(stop, str) else list(stop or [])
    kept = [sequence for sequence in sequences if sequence.strip()]
    if len(kept) < len(sequences):
        notes["stop"] = "whitespace-only sequences dropped: Anthropic rejects them"
    return kept


def response(body: Json, model: str) -> Json:
    """An Anthropic Messages response -> an OpenAI chat.completion answered by `model`."""
    texts: list[str] = []
    thinking: list[str] = []
    tool_calls: list[Json] = []
    for block in body.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "thinking":
            thinking.append(block.get("thinking", ""))
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": json.dumps(block.get("input") or {}),
                    },
                }
            )
    # OpenAI's content is null when the model only called tools.
    message: Json = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
    }
    if thinking:  # the field DeepSeek, vLLM and others use for reasoning text
        message["reasoning_content"] = "".join(thinking)
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": f"chatcmpl-{body.get('id', '')}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish_reason(body.get("stop_reason")),
            }
        ],
        "usage": _usage(body.get("usage") or {}),
    }


def _finish_reason(stop_reason: str | None) -> str:
    return _FINISH_REASONS.get(stop_reason or "", "stop")


def _usage(usage: Json) -> Json:
    """OpenAI counts cached prompt tokens inside prompt_tokens; Anthropic counts them apart."""
    cache_read = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + cache_read
    prompt += usage.get("cache_creation_input_tokens") or 0
    completion = usage.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }


def _sse(data: Json) -> bytes:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class StreamTranslator:
    """Anthropic stream events -> OpenAI chat.completion.chunk SSE frames, for one response."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self._model = model
        self._include_usage = include_usage
        self._id = "chatcmpl-"
        self._created = int(time.time())
        self._usage: Json = {}
        self._tool_calls: dict[int, int] = {}  # Anthropic block index -> OpenAI tool call index
        self._complete = False

    @property
    def complete(self) -> bool:
        """Whether the stream reached its end: message_stop (and `[DONE]`), or an error event."""
        return self._complete

    def event(self, name: str, data: str) -> list[bytes]:
        """One upstream SSE event -> the client frames it becomes (often none)."""
        if self._complete:
            return []
        try:
            payload = json.loads(data)
        except ValueError:
            return []
        if not isinstance(payload, dict):
            return []
        match name:
            case "message_start":
                return self._message_start(payload.get("message") or {})
            case "content_block_start":
                return self._block_start(payload)
            case "content_block_delta":
                return self._block_delta(payload)
            case "message_delta":
                return self._message_delta(payload)
            case "message_stop":
                return self._message_stop()
            case "error":  # the stream ends here, with the upstream's own reason
                self._complete = True
                return [_sse(_error(payload.get("error") or {}))]
            case _:  # ping, content_block_stop, and event types newer than this code
                return []

    def finish(self) -> list[bytes]:
        """The upstream ended: nothing to add.

        A complete stream already ended with `[DONE]`; an incomplete one must not get it, so
        the client does not take a truncated answer for a whole one (the caller adds an error
        frame instead).
        """
        return []

    def _message_start(self, message: Json) -> list[bytes]:
        self._id = f"chatcmpl-{message.get('id', '')}"
        self._usage = dict(message.get("usage") or {})
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, payload: Json) -> list[bytes]:
        block = payload.get("content_block") or {}
        kind = block.get("type")
        if kind == "tool_use":
            index = len(self._tool_calls)
            self._tool_calls[payload.get("index", -1)] = index
            call = {
                "index": index,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if kind == "text":
            return self._text("content", block.get("text"))
        if kind == "thinking":
            return self._text("reasoning_content", block.get("thinking"))
        return []

    def _block_delta(self, payload: Json) -> list[bytes]:
        delta = payload.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            return self._text("content", delta.get("text"))
        if kind == "thinking_delta":
            return self._text("reasoning_content", delta.get("thinking"))
        index = self._tool_calls.get(payload.get("index", -1))
        if kind == "input_json_delta" and index is not None and delta.get("partial_json"):
            call = {"index": index, "function": {"arguments": delta["partial_json"]}}
            return [self._chunk({"tool_calls": [call]})]
        return []  # signatures, citations, and input of Anthropic's own server tools

    def _message_delta(self, payload: Json) -> list[bytes]:
        usage = payload.get("usage") or {}
        self._usage.update({key: value for key, value in usage.items() if value is not None})
        stop_reason = (payload.get("delta") or {}).get("stop_reason")
        if stop_reason is None:
            return []
        return [self._chunk({}, _finish_reason(stop_reason))]

    def _message_stop(self) -> list[bytes]:
        self._complete = True
        frames = []
        if self._include_usage:  # OpenAI's usage chunk has no choices
            frames.append(_sse(self._envelope([], _usage(self._usage))))
        return [*frames, b"data: [DONE]\n\n"]

    def _text(self, field: str, text: str | None) -> list[bytes]:
        return [self._chunk({field: text})] if text else []

    def _chunk(self, delta: Json, finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _sse(self._envelope([choice], None))

    def _envelope(self, choices: list[Json], usage: Json | None) -> Json:
        chunk: Json = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if self._include_usage:  # with include_usage, OpenAI sends usage: null until the end
            chunk["usage"] = usage
        return chunk


def _error(error: Json) -> Json:
    """An Anthropic stream error in OpenAI's error shape, with OpenAI's type and code."""
    message = error.get("message") or "the upstream provider reported an error"
    kind = error.get("type") or "api_error"
    return openai_chat.error_body(RequestError(message, status=502, kind=kind))
