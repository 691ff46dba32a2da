"""OpenAI Responses clients served by an OpenAI Chat Completions provider.

Requests go from Responses to chat; responses and stream events come back from chat to
Responses. The gateway stores nothing, so the stateful half of Responses (`store`,
`previous_response_id`, item references) and the hosted tools have no equivalent; like every
setting chat cannot express, they are dropped rather than refused, and each drop is logged
once per request on `turnout.translate`, so an operator can see why a setting had no effect.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from turnout.apis import content
from turnout.apis.chat_chunks import ChatChunkTranslator, first_choice, reasoning_text
from turnout.apis.content import JsonObject
from turnout.routing.conversation import Role

logger = logging.getLogger("turnout.translate")

# Chat's developer role is OpenAI's own; system means the same to every chat server.
_ROLES: dict[str, Role] = {
    "user": "user",
    "assistant": "assistant",
    "system": "system",
    "developer": "system",
}
_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "refusal"})
# Same name, same meaning on both APIs.
_PASSED = ("temperature", "top_p", "user", "safety_identifier", "prompt_cache_key", "service_tier")
_READ = frozenset(
    {
        "model",
        "instructions",
        "input",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "stream",
        "stream_options",  # include_obfuscation only: padding the gateway's frames never carry
        "text",
        "reasoning",
        *_PASSED,
    }
)
# Values of unread fields that ask for what chat does anyway, so dropping them loses nothing.
_NEUTRAL: dict[str, object] = {
    "store": False,
    "include": [],
    "truncation": "disabled",
    "background": False,
}
_TOOL_CHOICES = frozenset({"auto", "none", "required"})
_IMAGE_DETAILS = frozenset({"auto", "low", "high"})
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def request(body: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI Responses request body -> the OpenAI chat request body for `model`."""
    dropped: list[str] = []
    chat_messages = _Conversation()
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise content.invalid("`instructions` must be a string.", "instructions")
    if instructions:
        chat_messages.add({"role": "system", "content": instructions})
    for path, item in _input_items(body.get("input")):
        _item(item, path, chat_messages, dropped)
    chat: JsonObject = {"model": model, "messages": chat_messages.done()}
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    chat.update({key: body[key] for key in _PASSED if body.get(key) is not None})
    tools = _tools(body.get("tools"), dropped)
    if tools:
        chat["tools"] = tools
        chat.update(_tool_choice(body.get("tool_choice"), dropped))
        if isinstance(body.get("parallel_tool_calls"), bool):
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    elif body.get("tool_choice") not in (None, "auto", "none"):  # chat refuses it without tools
        dropped.append("`tool_choice` (no function tools left to choose from)")
    chat.update(_text(body.get("text"), dropped))
    chat.update(_reasoning(body.get("reasoning"), dropped))
    if body.get("stream") is True:  # usage is only streamed on request
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    dropped.extend(
        f"`{key}`" for key, value in body.items() if key not in _READ and value != _NEUTRAL.get(key)
    )
    for name in dict.fromkeys(dropped):
        logger.warning("dropped %s: OpenAI chat cannot express it", name)
    return chat


class _Conversation:
    """Chat messages built item by item.

    Responses lists each function call and each output as its own item; chat wants a turn's
    calls on one assistant message and the tool messages right after it, so calls join the
    assistant message before them, and images returned by tools wait for the last tool message.
    """

    def __init__(self) -> None:
        self._messages: list[JsonObject] = []
        self._images: list[JsonObject] = []  # from tool outputs: chat tool messages carry text

    def add(self, message: JsonObject) -> None:
        self._flush()
        self._messages.append(message)

    def call(self, tool_call: JsonObject) -> None:
        last = self._messages[-1] if self._messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(tool_call)
        else:
            self.add({"role": "assistant", "content": None, "tool_calls": [tool_call]})

    def result(self, message: JsonObject, images: list[JsonObject]) -> None:
        self._messages.append(message)
        self._images.extend(images)

    def done(self) -> list[JsonObject]:
        self._flush()
        return self._messages

    def _flush(self) -> None:
        if self._images:
            self._messages.append({"role": "user", "content": self._images})
            self._images = []


def _input_items(value: object) -> list[tuple[str, JsonObject]]:
    """`input` is either one user message as a string or a list of items."""
    if isinstance(value, str):
        if not value:
            raise content.invalid("`input` must not be empty.", "input")
        return [("input", {"type": "message", "role": "user", "content": value})]
    if value is not None and not isinstance(value, list):
        raise content.invalid("`input` must be a string or a list of input items.", "input")
    return list(content.objects(content.non_empty_list(value, "input"), "input"))


def _item(item: JsonObject, path: str, chat: _Conversation, dropped: list[str]) -> None:
    """One input item into the chat conversation; items chat cannot replay are dropped."""
    kind = item.get("type", "message")  # an easy input message may omit its type
    if kind == "message":
        role = content.role(item, path, _ROLES)
        message = _message(role, item.get("content"), f"{path}.content", dropped)
        if message is not None:
            chat.add(message)
    elif kind == "function_call":
        arguments = content.required_string(item, "arguments", path)
        function = {"name": content.required_string(item, "name", path), "arguments": arguments}
        chat.call(
            {
                "id": content.required_string(item, "call_id", path),
                "type": "function",
                "function": function,
            }
        )
    elif kind == "function_call_output":
        chat.result(*_tool_result(item, path, dropped))
    elif isinstance(kind, str):  # reasoning (chat cannot replay it), item_reference, hosted tools
        dropped.append(f"`{kind}` input items")
    else:
        raise content.invalid(f"`{path}.type` must be a string.", f"{path}.type")


def _message(role: Role, value: object, path: str, dropped: list[str]) -> JsonObject | None:
    """A message as a chat message: text as one string, images and files as parts for users."""
    if isinstance(value, str):
        return {"role": role, "content": value}
    if not isinstance(value, list):
        raise content.invalid(f"`{path}` must be a string or a list of content parts.", path)
    parts: list[JsonObject] = []
    for part_path, kind, part in content.parts(value, path):
        if kind in _TEXT_PARTS or role == "user":
            parts.extend(_part(part, part_path, kind, dropped))
        else:  # chat system and assistant messages carry text only
            dropped.append(f"`{kind}` parts in {role} messages")
    if not parts:  # all of it was dropped
        return None
    if all(part["type"] == "text" for part in parts):  # a plain string suits every server
        return {"role": role, "content": "\n".join(part["text"] for part in parts)}
    return {"role": role, "content": parts}


def _part(part: JsonObject, path: str, kind: str, dropped: list[str]) -> list[JsonObject]:
    """A content part as a chat content part; a part chat cannot carry is dropped."""
    if kind in _TEXT_PARTS:
        key = "refusal" if kind == "refusal" else "text"  # a refusal replayed is what was said
        text = part.get(key)
        if not isinstance(text, str):
            raise content.invalid(f"`{path}.{key}` must be a string.", f"{path}.{key}")
        return [{"type": "text", "text": text}]
    if kind == "input_image" and isinstance(part.get("image_url"), str):
        image: JsonObject = {"url": part["image_url"]}
        detail = part.get("detail")
        if detail in _IMAGE_DETAILS:
            image["detail"] = detail
        elif detail is not None:
            dropped.append(f"image `detail` {detail!r}")
        return [{"type": "image_url", "image_url": image}]
    if kind == "input_file" and (part.get("file_data") or part.get("file_id")):
        file = {key: part[key] for key in ("file_data", "file_id", "filename") if part.get(key)}
        return [{"type": "file", "file": file}]
    if kind == "input_image":
        dropped.append("`input_image` parts without an `image_url` (chat cannot read file ids)")
    elif kind == "input_file":
        dropped.append("`input_file` parts without `file_data` or `file_id` (a `file_url`)")
    else:
        dropped.append(f"`{kind}` parts")
    return []


def _tool_result(
    item: JsonObject, path: str, dropped: list[str]
) -> tuple[JsonObject, list[JsonObject]]:
    """A function_call_output as a chat tool message, and the image and file parts it carried."""
    value = item.get("output")
    if isinstance(value, str):
        parts = [{"type": "text", "text": value}]
    elif isinstance(value, list):
        parts = []
        for part_path, kind, part in content.parts(value, f"{path}.output"):
            parts.extend(_part(part, part_path, kind, dropped))
    else:
        raise content.invalid(f"`{path}.output` must be a string or a list.", f"{path}.output")
    text = "\n".join(part["text"] for part in parts if part["type"] == "text")
    message = {
        "role": "tool",
        "tool_call_id": content.required_string(item, "call_id", path),
        "content": text,
    }
    return message, [part for part in parts if part["type"] != "text"]


def _tools(value: object, dropped: list[str]) -> list[JsonObject]:
    """Function tools as chat functions; hosted tools (web_search, file_search...) are dropped.

    Responses treats an unset `strict` as strict and rewrites the schema to fit; chat would
    refuse such a schema, so an unset `strict` stays unset (non-strict on chat).
    """
    return content.chat_function_tools(
        value, lambda kind: kind == "function", "parameters", dropped
    )


def _tool_choice(value: object, dropped: list[str]) -> JsonObject:
    """`tool_choice` for a request that has function tools."""
    if value is None:
        return {}
    if isinstance(value, str) and value in _TOOL_CHOICES:
        return {"tool_choice": value}
    if not isinstance(value, dict):
        raise content.invalid(
            "`tool_choice` must be 'auto', 'none', 'required' or an object.", "tool_choice"
        )
    if value.get("type") == "function":
        name = content.required_string(value, "name", "tool_choice")
        return {"tool_choice": {"type": "function", "function": {"name": name}}}
    dropped.append(f"`tool_choice` of type `{value.get('type')}`")  # allowed_tools, hosted tools
    return {}


def _text(value: object, dropped: list[str]) -> JsonObject:
    """`text.format` as chat's `response_format`, and `text.verbosity` as chat's `verbosity`."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise content.invalid("`text` must be an object.", "text")
    dropped.extend(f"`text.{key}`" for key in value if key not in ("format", "verbosity"))
    chat: JsonObject = {}
    if value.get("verbosity") is not None:
        chat["verbosity"] = value["verbosity"]
    fmt = value.get("format")
    if fmt is None:
        return chat
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise content.invalid("`text.format.schema` must be an object.", "text.format.schema")
        json_schema: JsonObject = {
            "name": content.required_string(fmt, "name", "text.format"),
            "schema": schema,
        }
        json_schema.update({key: fmt[key] for key in ("description", "strict") if key in fmt})
        chat["response_format"] = {"type": "json_schema", "json_schema": json_schema}
    elif kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif kind != "text":
        raise content.invalid(
            "`text.format.type` must be one of 'text', 'json_schema', 'json_object'.",
            "text.format.type",
        )
    return chat


def _reasoning(value: object, dropped: list[str]) -> JsonObject:
    """`reasoning.effort` as chat's `reasoning_effort`; chat has no reasoning summaries."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise content.invalid("`reasoning` must be an object.", "reasoning")
    dropped.extend(
        f"`reasoning.{key}`" for key, setting in value.items() if key != "effort" and setting
    )
    return {} if value.get("effort") is None else {"reasoning_effort": value["effort"]}


def response(body: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat.completion -> a Responses `response` object (id "resp_" + upstream id,
    model=`model`)."""
    choice = first_choice(body)
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    output: list[JsonObject] = []
    reasoning = reasoning_text(message)
    if reasoning:
        output.append({**_new_item("reasoning"), "content": [_part_of("reasoning", reasoning)]})
    parts = [
        _part_of(kind, message[key])
        for kind, key in (("text", "content"), ("refusal", "refusal"))
        if isinstance(message.get(key), str) and message[key]
    ]
    if parts:
        output.append({**_new_item("text"), "content": parts})
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict):
            function = call.get("function")
            function = function if isinstance(function, dict) else {}
            output.append(_function_call(call, function, _arguments(function.get("arguments"))))
    reason = _INCOMPLETE.get(str(choice.get("finish_reason")))
    for item in output:
        item["status"] = "completed"
    if reason and output:  # the last item is the one the limit cut short
        output[-1]["status"] = "incomplete"
    return {
        **_response_object(body, model),
        "status": "incomplete" if reason else "completed",
        "incomplete_details": {"reason": reason} if reason else None,
        "output": output,
        "usage": _usage(body.get("usage")),
    }


def _response_object(chunk: JsonObject, model: str) -> JsonObject:
    """A response without output yet.

    The SDKs require the fields a response echoes from its request (`tools`, `tool_choice`,
    `parallel_tool_calls`), but the request is not at hand here, so they carry the defaults.
    """
    upstream = chunk.get("id")
    created = chunk.get("created")
    return {
        "id": f"resp_{upstream}" if isinstance(upstream, str) and upstream else _id("resp"),
        "object": "response",
        "created_at": created if isinstance(created, int) else int(time.time()),
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": None,
    }


def _new_item(kind: str) -> JsonObject:
    """An empty reasoning item, or an empty assistant message for "text" and "refusal"."""
    if kind == "reasoning":
        return {"id": _id("rs"), "type": "reasoning", "summary": [], "content": []}
    return {"id": _id("msg"), "type": "message", "role": "assistant", "content": []}


def _part_of(kind: str, text: str) -> JsonObject:
    """The content part holding `text` in a reasoning, text or refusal item."""
    if kind == "reasoning":
        return {"type": "reasoning_text", "text": text}
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _function_call(call: JsonObject, function: JsonObject, arguments: str) -> JsonObject:
    """A function_call item; chat's call id is the call_id the client answers with."""
    call_id = call.get("id")
    return {
        "id": _id("fc"),
        "type": "function_call",
        "call_id": call_id if isinstance(call_id, str) and call_id else _id("call"),
        "name": function.get("name") or "",
        "arguments": arguments,
    }


def _arguments(value: object) -> str:
    """Arguments as a JSON string; some servers send nothing for a call without arguments."""
    if value is None or value == "":
        return "{}"
    return value if isinstance(value, str) else json.dumps(value)


def _usage(usage: object) -> JsonObject | None:
    """Chat's usage in Responses' names; both count cached tokens inside the input tokens."""
    if not isinstance(usage, dict):
        return None
    prompt = _details(usage, "prompt_tokens_details")
    completion = _details(usage, "completion_tokens_details")
    input_tokens = _count(usage.get("prompt_tokens"))
    output_tokens = _count(usage.get("completion_tokens"))
    total = usage.get("total_tokens")
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": _count(prompt.get("cached_tokens")),
            "cache_write_tokens": _count(prompt.get("cache_write_tokens")),
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": _count(completion.get("reasoning_tokens"))},
        "total_tokens": total if isinstance(total, int) else input_tokens + output_tokens,
    }


def _details(usage: JsonObject, key: str) -> JsonObject:
    value = usage.get(key)
    return value if isinstance(value, dict) else {}


def _count(value: object) -> int:
    return value if isinstance(value, int) else 0


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass(slots=True)
class _Open:
    """The output item being streamed: reasoning, text, refusal, or "tool N" for call N."""

    kind: str
    item: JsonObject
    index: int  # its output_index
    text: str = ""  # its text, or its arguments, so far

    def where(self, *, text_event: bool = False) -> JsonObject:
        """The event fields that locate this item's one content part."""
        fields: JsonObject = {
            "item_id": self.item["id"],
            "output_index": self.index,
            "content_index": 0,
        }
        if text_event and self.kind == "text":  # output_text deltas and done carry logprobs
            fields["logprobs"] = []
        return fields


# Event name prefix of each streamed text kind; a refusal keeps its text under "refusal".
_TEXT_EVENTS = {
    "reasoning": "response.reasoning_text",
    "text": "response.output_text",
    "refusal": "response.refusal",
}


class StreamTranslator(ChatChunkTranslator):
    """OpenAI chat.completion.chunk events -> Responses stream SSE frames, for one response.

    Chat interleaves reasoning, text and tool-call pieces in deltas; Responses wants output
    items with consecutive output indices, each done before the next is added. Reasoning,
    text and a refusal each become an item of one content part.
    """

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self._response: JsonObject = {}  # set by the first event
        self._sequence = 0
        self._open: _Open | None = None
        self._tools: set[str] = set()  # tool call items added so far

    def _start(self, chunk: JsonObject) -> list[bytes]:
        """response.created and response.in_progress, once: SDKs require them first."""
        if self._response:
            return []
        self._response = _response_object(chunk, self.model)
        return [
            self._frame("response.created", response=self._response),
            self._frame("response.in_progress", response=self._response),
        ]

    def _delta(self, delta: JsonObject) -> list[bytes]:
        frames: list[bytes] = []
        for kind, text in (
            ("reasoning", reasoning_text(delta)),
            ("text", delta.get("content")),
            ("refusal", delta.get("refusal")),
        ):
            if isinstance(text, str) and text:
                frames += self._text(kind, text)
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                frames += self._tool_call(call)
        return frames

    def _text(self, kind: str, text: str) -> list[bytes]:
        """A piece of reasoning, text or refusal, adding its item and part when new."""
        frames: list[bytes] = []
        opened = self._open
        if opened is None or opened.kind != kind:
            opened = self._add(kind, _new_item(kind), frames)
            part = _part_of(kind, "")
            frames.append(self._frame("response.content_part.added", **opened.where(), part=part))
        opened.text += text
        delta = {**opened.where(text_event=True), "delta": text}
        frames.append(self._frame(f"{_TEXT_EVENTS[kind]}.delta", **delta))
        return frames

    def _tool_call(self, call: JsonObject) -> list[bytes]:
        """A tool call's first piece adds its item (call id and name); argument pieces follow."""
        kind = f"tool {call.get('index', 0)}"
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        frames: list[bytes] = []
        opened = self._open
        if opened is None or opened.kind != kind:
            if kind in self._tools:  # its item is done; Responses cannot reopen it
                logger.warning("dropped arguments for a tool call whose item was done")
                return []
            self._tools.add(kind)
            opened = self._add(kind, _function_call(call, function, ""), frames)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            frames.append(self._arguments_delta(opened, arguments))
        return frames

    def _add(self, kind: str, item: JsonObject, frames: list[bytes]) -> _Open:
        """Finish the open item and add `item` as the next, appending their frames to `frames`."""
        frames += self._done("completed")
        item["status"] = "in_progress"
        output = self._response["output"]
        output.append(item)
        self._open = _Open(kind, item, len(output) - 1)
        frames.append(
            self._frame("response.output_item.added", output_index=len(output) - 1, item=item)
        )
        return self._open

    def _done(self, status: str) -> list[bytes]:
        """The open item's closing events, each with its full text or arguments."""
        opened = self._open
        if opened is None:
            return []
        frames: list[bytes] = []
        item = opened.item
        if opened.kind in _TEXT_EVENTS:
            part = _part_of(opened.kind, opened.text)
            field = "refusal" if opened.kind == "refusal" else "text"
            done = {**opened.where(text_event=True), field: opened.text}
            frames.append(self._frame(f"{_TEXT_EVENTS[opened.kind]}.done", **done))
            frames.append(self._frame("response.content_part.done", **opened.where(), part=part))
            item["content"] = [part]
        else:
            if not opened.text:  # clients parse the arguments as JSON
                frames.append(self._arguments_delta(opened, "{}"))
            where = {"item_id": item["id"], "output_index": opened.index}
            frames.append(
                self._frame("response.function_call_arguments.done", **where, arguments=opened.text)
            )
            item["arguments"] = opened.text
        item["status"] = status
        frames.append(
            self._frame("response.output_item.done", output_index=opened.index, item=item)
        )
        self._open = None
        return frames

    def _arguments_delta(self, opened: _Open, arguments: str) -> bytes:
        opened.text += arguments
        where = {"item_id": opened.item["id"], "output_index": opened.index}
        return self._frame("response.function_call_arguments.delta", **where, delta=arguments)

    def _close(self) -> list[bytes]:
        """The closing frames: the open item's, then response.completed or .incomplete."""
        frames = self._start({})
        reason = _INCOMPLETE.get(str(self._finish_reason))
        status = "incomplete" if reason else "completed"
        frames += self._done(status)
        self._response["status"] = status
        self._response["incomplete_details"] = {"reason": reason} if reason else None
        self._response["usage"] = _usage(self._usage)
        frames.append(self._frame(f"response.{status}", response=self._response))
        self._ended = True
        return frames

    def _error(self, error: object) -> list[bytes]:
        """An upstream error as response.failed, which ends the client's stream."""
        frames = self._start({})
        message = error.get("message") if isinstance(error, dict) else error
        if not isinstance(message, str):
            message = json.dumps(error)
        # ResponseError.code is a closed set; a rate limit is the one chat error it names.
        kinds = (error.get("code"), error.get("type")) if isinstance(error, dict) else ()
        code = "rate_limit_exceeded" if "rate_limit_exceeded" in kinds else "server_error"
        self._response["status"] = "failed"
        self._response["error"] = {"code": code, "message": message}
        frames.append(self._frame("response.failed", response=self._response))
        self._ended = True
        return frames

    def _frame(self, kind: str, **fields: Any) -> bytes:
        """One SSE frame named after its event type, numbered in the order it is sent."""
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode()
