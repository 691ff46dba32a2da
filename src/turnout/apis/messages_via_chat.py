"""Anthropic Messages clients served by an OpenAI Chat Completions provider.

Requests go from Messages to chat; responses and stream events come back from chat to
Messages. What chat cannot express is dropped rather than refused, so a client written for
Claude still gets an answer; each drop is logged once per request on `turnout.translate`, so
an operator can see why a model ignored a setting.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from turnout.apis import content
from turnout.apis.chat_chunks import ChatChunkTranslator, first_choice, reasoning_text
from turnout.apis.content import JsonObject
from turnout.routing.conversation import Role

logger = logging.getLogger("turnout.translate")

_ROLES: dict[str, Role] = {"user": "user", "assistant": "assistant"}
_PASSED = ("temperature", "top_p")  # same name, same meaning on both APIs
_READ = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "stop_sequences",
        "stream",
        "tools",
        "tool_choice",
        "metadata",
        "thinking",
        *_PASSED,
    }
)
_BLOCK_KEYS = {
    "text": frozenset({"type", "text"}),
    "image": frozenset({"type", "source"}),
    "tool_use": frozenset({"type", "id", "name", "input"}),
    "tool_result": frozenset({"type", "tool_use_id", "content", "is_error"}),
}
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def request(body: dict[str, Any], model: str) -> dict[str, Any]:
    """An Anthropic Messages request body -> the OpenAI chat request body for `model`."""
    dropped: list[str] = []
    messages = _system(body.get("system"), dropped)
    history = content.non_empty_list(body.get("messages"), "messages")
    for path, message in content.objects(history, "messages"):
        messages.extend(_messages(message, path, dropped))
    chat: JsonObject = {"model": model, "messages": messages}
    if body.get("max_tokens") is not None:
        chat["max_tokens"] = body["max_tokens"]
    if body.get("stop_sequences"):
        chat["stop"] = body["stop_sequences"]
    chat.update({key: body[key] for key in _PASSED if body.get(key) is not None})
    tools = _tools(body.get("tools"), dropped)
    if tools:
        chat["tools"] = tools
        chat.update(_tool_choice(body.get("tool_choice")))
    elif body.get("tool_choice") is not None:  # chat refuses a tool_choice without tools
        dropped.append("`tool_choice` (no function tools left to choose from)")
    if body.get("stream") is True:  # usage is only streamed on request
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        _extras(metadata, frozenset({"user_id"}), "`metadata`", dropped)
        if isinstance(metadata.get("user_id"), str):
            chat["user"] = metadata["user_id"]
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") != "disabled":
        dropped.append("`thinking`")
    dropped.extend(f"`{key}`" for key in body if key not in _READ)
    for name in dict.fromkeys(dropped):
        logger.warning("dropped %s: OpenAI chat cannot express it", name)
    return chat


def _system(value: object, dropped: list[str]) -> list[JsonObject]:
    """The system prompt as a leading system message, a string for the widest server support."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value
    elif isinstance(value, list):
        texts = []
        for path, kind, block in content.parts(value, "system"):
            if kind == "text":
                texts.append(_text(block, path, dropped))
            else:
                dropped.append(f"`{kind}` blocks in `system`")
        text = "\n".join(texts)
    else:
        raise content.invalid("`system` must be a string or a list of text blocks.", "system")
    return [{"role": "system", "content": text}] if text else []


def _messages(message: JsonObject, path: str, dropped: list[str]) -> list[JsonObject]:
    """One Messages message as zero or more chat messages."""
    role = content.role(message, path, _ROLES)
    value = message.get("content")
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if not isinstance(value, list):
        raise content.invalid(
            f"`{path}.content` must be a string or a list of content blocks.", f"{path}.content"
        )
    blocks = list(content.parts(value, f"{path}.content"))
    return _assistant(blocks, dropped) if role == "assistant" else _user(blocks, dropped)


def _user(blocks: list[tuple[str, str, JsonObject]], dropped: list[str]) -> list[JsonObject]:
    """Tool results first, as "tool" messages answering the previous assistant's calls, then
    what the user wrote beside them.

    Chat tool messages carry text only, so images returned by a tool ride in that user
    message instead.
    """
    results: list[JsonObject] = []
    parts: list[JsonObject] = []
    for path, kind, block in blocks:
        if kind == "tool_result":
            result, images = _tool_result(block, path, dropped)
            results.append(result)
            parts.extend(images)
        else:
            parts.extend(_part(block, path, kind, dropped))
    if not parts:
        return results
    if all(part["type"] == "text" for part in parts):  # a plain string suits every server
        return [*results, {"role": "user", "content": "\n".join(p["text"] for p in parts)}]
    return [*results, {"role": "user", "content": parts}]


def _assistant(blocks: list[tuple[str, str, JsonObject]], dropped: list[str]) -> list[JsonObject]:
    """Text and tool_use blocks as one assistant message; thinking cannot be replayed to chat."""
    texts: list[str] = []
    calls: list[JsonObject] = []
    for path, kind, block in blocks:
        if kind == "text":
            texts.append(_text(block, path, dropped))
        elif kind == "tool_use":
            _extras(block, _BLOCK_KEYS[kind], "`tool_use` blocks", dropped)
            arguments = json.dumps(block.get("input", {}), ensure_ascii=False)
            function = {
                "name": content.required_string(block, "name", path),
                "arguments": arguments,
            }
            calls.append(
                {
                    "id": content.required_string(block, "id", path),
                    "type": "function",
                    "function": function,
                }
            )
        else:
            dropped.append(f"`{kind}` blocks in assistant messages")
    if not texts and not calls:
        return []
    message: JsonObject = {"role": "assistant", "content": "\n".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return [message]


def _tool_result(
    block: JsonObject, path: str, dropped: list[str]
) -> tuple[JsonObject, list[JsonObject]]:
    """A tool_result as a chat tool message, and the image parts it carried."""
    _extras(block, _BLOCK_KEYS["tool_result"], "`tool_result` blocks", dropped)
    value = block.get("content")
    if value is None or isinstance(value, str):
        parts = [{"type": "text", "text": value or ""}]
    elif isinstance(value, list):
        parts = []
        for part_path, kind, part in content.parts(value, f"{path}.content"):
            parts.extend(_part(part, part_path, kind, dropped))
    else:
        raise content.invalid(f"`{path}.content` must be a string or a list.", f"{path}.content")
    text = "\n".join(part["text"] for part in parts if part["type"] == "text")
    if block.get("is_error") is True:  # chat has no error flag; the model reads it in the text
        text = f"Error: {text}"
    message = {
        "role": "tool",
        "tool_call_id": content.required_string(block, "tool_use_id", path),
        "content": text,
    }
    return message, [part for part in parts if part["type"] != "text"]


def _part(block: JsonObject, path: str, kind: str, dropped: list[str]) -> list[JsonObject]:
    """A text or image block as a chat content part; any other block is dropped."""
    if kind == "text":
        return [{"type": "text", "text": _text(block, path, dropped)}]
    if kind != "image":
        dropped.append(f"`{kind}` blocks")
        return []
    _extras(block, _BLOCK_KEYS[kind], "`image` blocks", dropped)
    source = block.get("source")
    if not isinstance(source, dict):
        raise content.invalid(f"`{path}.source` must be an object.", f"{path}.source")
    where = f"{path}.source"
    if source.get("type") == "base64":
        media_type = content.required_string(source, "media_type", where)
        url = f"data:{media_type};base64,{content.required_string(source, 'data', where)}"
    elif source.get("type") == "url":
        url = content.required_string(source, "url", where)
    else:
        dropped.append(f"`image` blocks with a `{source.get('type')}` source")
        return []
    return [{"type": "image_url", "image_url": {"url": url}}]


def _text(block: JsonObject, path: str, dropped: list[str]) -> str:
    _extras(block, _BLOCK_KEYS["text"], "`text` blocks", dropped)
    return content.part_text(block, path)


def _tools(value: object, dropped: list[str]) -> list[JsonObject]:
    """Client tools as chat functions; Anthropic-defined tools (a versioned `type`) are dropped."""
    return content.chat_function_tools(
        value, lambda kind: kind in (None, "custom"), "input_schema", dropped
    )


def _tool_choice(value: object) -> JsonObject:
    """`tool_choice` and `parallel_tool_calls`, for a request that has tools."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise content.invalid("`tool_choice` must be an object.", "tool_choice")
    kind = value.get("type")
    choice: object
    if kind == "tool":
        choice = {
            "type": "function",
            "function": {"name": content.required_string(value, "name", "tool_choice")},
        }
    elif isinstance(kind, str) and kind in _TOOL_CHOICES:
        choice = _TOOL_CHOICES[kind]
    else:
        raise content.invalid(
            "`tool_choice.type` must be one of 'auto', 'any', 'tool', 'none'.", "tool_choice.type"
        )
    chat: JsonObject = {"tool_choice": choice}
    if value.get("disable_parallel_tool_use") is True:
        chat["parallel_tool_calls"] = False
    return chat


def _extras(value: JsonObject, known: frozenset[str], where: str, dropped: list[str]) -> None:
    """Record the keys of `value` this translation does not carry over (cache_control...)."""
    dropped.extend(f"`{key}` on {where}" for key in value if key not in known)


def response(body: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat.completion -> an Anthropic Messages response (type message, id "msg_" +
    upstream id, model=`model`)."""
    choice = first_choice(body)
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    blocks: list[JsonObject] = []
    reasoning = reasoning_text(message)
    if reasoning:  # no signature exists; the block is only ever read, never replayed
        blocks.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content")
    if isinstance(text, str) and text:
        blocks.append({"type": "text", "text": text})
    calls = [call for call in message.get("tool_calls") or [] if isinstance(call, dict)]
    for call in calls:
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id") or _tool_use_id(),
                "name": function.get("name") or "",
                "input": _tool_input(function.get("arguments")),
            }
        )
    return {
        "id": _message_id(body),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": _stop_reason(choice.get("finish_reason"), bool(calls)),
        "stop_sequence": None,
        "usage": _usage(body.get("usage")),
    }


def _tool_input(arguments: object) -> JsonObject:
    """Tool arguments as an object; Messages requires one, so anything else is kept raw."""
    if arguments is None or arguments == "":  # some servers send nothing for a no-argument call
        return {}
    try:
        value = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"_raw": arguments}


def _stop_reason(finish_reason: object, called_tools: bool) -> str:
    """Messages' stop_reason for chat's finish_reason.

    Chat cannot say which stop sequence matched, so `stop` is always `end_turn`. Some servers
    report `stop` after tool calls; Messages clients loop on `tool_use`, so calls win.
    """
    reason = _STOP_REASONS.get(str(finish_reason), "end_turn")
    return "tool_use" if called_tools and reason == "end_turn" else reason


def _usage(usage: object) -> JsonObject:
    """Chat counts cached prompt tokens inside prompt_tokens; Messages counts them apart."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return {
        "input_tokens": max(_count(usage.get("prompt_tokens")) - cached, 0),
        "output_tokens": _count(usage.get("completion_tokens")),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def _count(value: object) -> int:
    return value if isinstance(value, int) else 0


def _message_id(chunk: JsonObject) -> str:
    upstream = chunk.get("id")
    return (
        f"msg_{upstream}" if isinstance(upstream, str) and upstream else f"msg_{uuid.uuid4().hex}"
    )


def _tool_use_id() -> str:
    """An id for a tool call the server left without one: the client must answer by id."""
    return f"toolu_{uuid.uuid4().hex[:24]}"


class StreamTranslator(ChatChunkTranslator):
    """OpenAI chat.completion.chunk events -> Anthropic stream SSE frames, for one response.

    Chat interleaves reasoning, text and tool-call pieces in deltas; Messages wants them as
    content blocks with consecutive indices, each stopped before the next starts.
    """

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self._started = False
        self._index = -1  # index of the latest content block
        self._open: str | None = None  # "thinking", "text" or "tool N", the block being filled
        self._tools: set[str] = set()  # tool blocks started so far

    def _start(self, chunk: JsonObject) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        message: JsonObject = {
            "id": _message_id(chunk),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(self._usage),
        }
        return [_frame({"type": "message_start", "message": message}), _frame({"type": "ping"})]

    def _delta(self, delta: JsonObject) -> list[bytes]:
        frames: list[bytes] = []
        reasoning = reasoning_text(delta)
        if reasoning:
            frames += self._block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            frames.append(self._piece({"type": "thinking_delta", "thinking": reasoning}))
        text = delta.get("content")
        if isinstance(text, str) and text:
            frames += self._block("text", {"type": "text", "text": ""})
            frames.append(self._piece({"type": "text_delta", "text": text}))
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                frames += self._tool_call(call)
        return frames

    def _tool_call(self, call: JsonObject) -> list[bytes]:
        """A tool call's first piece starts its block (id and name); argument pieces follow."""
        key = f"tool {call.get('index', 0)}"
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        frames: list[bytes] = []
        if key != self._open:
            if key in self._tools:  # its block is stopped; Messages cannot reopen it
                logger.warning("dropped arguments for a tool call whose block was closed")
                return []
            self._tools.add(key)
            block: JsonObject = {
                "type": "tool_use",
                "id": call.get("id") or _tool_use_id(),
                "name": function.get("name") or "",
                "input": {},
            }
            frames += self._block(key, block)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            frames.append(self._piece({"type": "input_json_delta", "partial_json": arguments}))
        return frames

    def _block(self, key: str, block: JsonObject) -> list[bytes]:
        """Start `block` unless it is the one open, stopping the one open first."""
        if key == self._open:
            return []
        frames = self._stop_block()
        self._index += 1
        self._open = key
        frames.append(
            _frame({"type": "content_block_start", "index": self._index, "content_block": block})
        )
        return frames

    def _piece(self, delta: JsonObject) -> bytes:
        return _frame({"type": "content_block_delta", "index": self._index, "delta": delta})

    def _stop_block(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        return [_frame({"type": "content_block_stop", "index": self._index})]

    def _close(self) -> list[bytes]:
        """The closing frames: the open block's stop, message_delta, message_stop."""
        frames = self._start({})
        frames += self._stop_block()
        stop_reason = _stop_reason(self._finish_reason, bool(self._tools))
        delta = {"stop_reason": stop_reason, "stop_sequence": None}
        frames.append(
            _frame({"type": "message_delta", "delta": delta, "usage": _usage(self._usage)})
        )
        frames.append(_frame({"type": "message_stop"}))
        self._ended = True
        return frames

    def _error(self, error: object) -> list[bytes]:
        """An upstream error as Messages' error event, which ends the client's stream."""
        self._ended = True
        message = error.get("message") if isinstance(error, dict) else error
        if not isinstance(message, str):
            message = json.dumps(error)
        return [_frame({"type": "error", "error": {"type": "api_error", "message": message}})]


def _frame(payload: JsonObject) -> bytes:
    """One SSE frame named after its payload's type, as Messages streams name them."""
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()
