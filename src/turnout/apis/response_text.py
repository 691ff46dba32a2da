"""The assistant's text in responses, read and rewritten in the client's API format; token usage.

Output guardrails (PII redaction and the like) and budgets need two things from a response,
whichever of the three client APIs it is written in: every piece of text the assistant wrote,
rewritten by a function, with everything else left as it was (unknown fields included); and the
tokens it cost. `map_body_texts` and `body_usage` do it for whole bodies, `StreamTextEditor` for
SSE streams event by event, and `edit_sse` wraps a byte stream with it.

What counts as the assistant's text:

- Chat Completions: `choices[].message.content` (a string, or `text` parts when a server sends a
  list), `choices[].message.refusal`; in streams `delta.content` and `delta.refusal`.
- Messages: `text` blocks (`text_delta` in streams).
- Responses: `output_text` parts and `refusal` parts of `message` output items (their deltas,
  `.done` events, and the parts and items carried again by later events).

Refusals are edited: they are words the model wrote for the user, and a refusal can quote the
prompt (a name, an address) as easily as an answer can. Not edited: reasoning / thinking text
(kept for the model's own use, and Anthropic signs it), tool-call arguments (JSON a program
parses; rewriting it would break the call, and a guard that cares must look at the call
itself), citations' quoted source text, and logprobs (they carry the original tokens: a guard
that redacts should not let clients ask for logprobs). Annotation offsets in `output_text`
parts are not moved, so they stay right only for editors that keep lengths.

Usage: `input_tokens` is every prompt token, so Anthropic's `cache_creation_input_tokens` and
`cache_read_input_tokens` are added to its `input_tokens`, as OpenAI's `prompt_tokens` already
includes cached tokens (and as turnout's chat<->messages translation counts them): a budget
then counts the same prompt the same whichever provider answered.
"""

from __future__ import annotations

import codecs
import copy
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from turnout.apis.sse import SSEDecoder

__all__ = [
    "Api",
    "Event",
    "StreamTextEditor",
    "TextStream",
    "Usage",
    "body_usage",
    "edit_sse",
    "encode_event",
    "map_body_texts",
]

Api = Literal["openai_chat", "anthropic_messages", "openai_responses"]
Json = dict[str, Any]
Event = tuple[str | None, Any]  # (SSE event name or None, parsed JSON data or the raw string)

_CHAT_FIELDS = ("content", "refusal")  # chat's text fields, in a message and in a delta
# Responses part type -> (the part's text field, the stream's event name prefix)
_RESPONSES_PARTS = {
    "output_text": ("text", "response.output_text"),
    "refusal": ("refusal", "response.refusal"),
}
_RESPONSES_ENDS = frozenset(
    {"response.completed", "response.incomplete", "response.failed", "error"}
)


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one response cost: every prompt token (cached ones included), and the output's."""

    input_tokens: int
    output_tokens: int


class TextStream(Protocol):
    """A streaming text editor (a redactor): it may hold back text until it knows more."""

    def feed(self, piece: str) -> str:
        """The next piece of text in; the edited text that is safe to emit now out."""
        ...

    def flush(self) -> str:
        """The end of the text: everything still held back, edited."""
        ...


class _Identity:
    """The editor used to measure a stream without changing it."""

    def feed(self, piece: str) -> str:
        return piece

    def flush(self) -> str:
        return ""


# ---- whole bodies ------------------------------------------------------------------------------


def map_body_texts(api: Api, body: dict[str, Any], edit: Callable[[str], str]) -> dict[str, Any]:
    """A copy of a whole (non-streamed) response body with `edit` applied to each assistant text.

    Chat: `choices[].message.content` (a string, or the `text` of `text` parts) and
    `choices[].message.refusal`. Messages: `content[]` blocks of type `text` (not `thinking`,
    not `tool_use` input). Responses: `output[]` items of type `message`, their `output_text`
    parts' `text` and `refusal` parts' `refusal`. Tool-call arguments are not text here (see the
    module's docstring). Anything malformed is copied as it is; this never raises (unless
    `edit` does). Empty texts are left alone.
    """
    result: Any = copy.deepcopy(body)
    if not isinstance(result, dict):
        return result  # type: ignore[no-any-return]
    if api == "openai_chat":
        for choice in _dicts(result.get("choices")):
            message = choice.get("message")
            if isinstance(message, dict):
                _edit_chat_message(message, edit)
    elif api == "anthropic_messages":
        for block in _dicts(result.get("content")):
            if block.get("type") == "text":
                _edit_field(block, "text", edit)
    elif api == "openai_responses":
        _edit_responses_output(result, lambda _key, _kind, text: edit(text))
    return result


def _edit_chat_message(message: Json, edit: Callable[[str], str]) -> None:
    content = message.get("content")
    if isinstance(content, list):  # some servers answer with parts
        for part in _dicts(content):
            if part.get("type") == "text":
                _edit_field(part, "text", edit)
            elif part.get("type") == "refusal":
                _edit_field(part, "refusal", edit)
    else:
        _edit_field(message, "content", edit)
    _edit_field(message, "refusal", edit)


def _edit_field(holder: Json, key: str, edit: Callable[[str], str]) -> None:
    value = holder.get(key)
    if isinstance(value, str) and value:
        holder[key] = edit(value)


def _edit_responses_output(
    response: Json, edit: Callable[[tuple[int, int], str, str], str], *, empty: bool = False
) -> None:
    """Applies `edit((output index, content index), part type, text)` to a response's texts."""
    output = response.get("output")
    if not isinstance(output, list):
        return
    for output_index, item in enumerate(output):
        if isinstance(item, dict) and item.get("type") == "message":
            _edit_item_parts(item, output_index, edit, empty=empty)


def _edit_item_parts(
    item: Json,
    output_index: int,
    edit: Callable[[tuple[int, int], str, str], str],
    *,
    empty: bool = False,
) -> None:
    content = item.get("content")
    if not isinstance(content, list):
        return
    for content_index, part in enumerate(content):
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if isinstance(kind, str) and kind in _RESPONSES_PARTS:
            field = _RESPONSES_PARTS[kind][0]
            text = part.get(field)
            if isinstance(text, str) and (text or empty):
                part[field] = edit((output_index, content_index), kind, text)


def _dicts(value: object) -> list[Json]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


# ---- usage -------------------------------------------------------------------------------------


def body_usage(api: Api, body: dict[str, Any]) -> Usage | None:
    """The tokens a whole response body reports; None when absent or malformed (never raises).

    Chat: `usage.prompt_tokens` / `completion_tokens`. Messages: `usage.input_tokens` plus
    `cache_creation_input_tokens` and `cache_read_input_tokens` when present / `output_tokens`.
    Responses: `usage.input_tokens` / `output_tokens`.
    """
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return None
    if api == "openai_chat":
        return _usage(usage.get("prompt_tokens"), usage.get("completion_tokens"))
    if api == "anthropic_messages":
        return _usage(_messages_input(usage), usage.get("output_tokens"))
    if api == "openai_responses":
        return _usage(usage.get("input_tokens"), usage.get("output_tokens"))
    return None


def _count(value: object) -> int | None:
    """A token count: a non-negative int (not a bool)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _usage(input_tokens: object, output_tokens: object) -> Usage | None:
    given, produced = _count(input_tokens), _count(output_tokens)
    if given is None or produced is None:
        return None
    return Usage(given, produced)


def _messages_input(usage: Json) -> int | None:
    """Messages' input tokens with the cache's added; a cache count that is null is zero."""
    base = _count(usage.get("input_tokens"))
    if base is None:
        return None
    for key in ("cache_creation_input_tokens", "cache_read_input_tokens"):
        value = usage.get(key)
        if value is not None:
            extra = _count(value)
            if extra is None:
                return None
            base += extra
    return base


# ---- streams -----------------------------------------------------------------------------------


class StreamTextEditor:
    """Applies a streaming text editor to a client-format SSE stream, event by event.

    One editor per text stream, made by `new_editor` when the text starts: per choice index and
    field (`content`, `refusal`) for chat, per content block for Messages, per output item and
    content part for Responses. Text deltas carry what the editor lets out; what it held back
    is flushed as an extra delta event right before the event that ends that text (chat: the
    chunk with that choice's `finish_reason`, joined to its delta when that chunk carries text
    too; Messages: `content_block_stop`; Responses: `response.output_text.done` /
    `response.refusal.done`), and before any terminal event (`[DONE]`, an error,
    `message_stop`, `response.completed`...) for a text left open. Responses events that
    repeat a whole text (`.done`, `content_part.done`, `output_item.done`, the final response)
    carry exactly the concatenation of the deltas emitted for it, and Responses'
    `sequence_number`s are renumbered to stay consecutive around inserted events.

    With `new_editor` None, events pass through untouched and only `usage` and `text_chars`
    (the number of assistant text characters the model produced, before editing) are measured.
    Events are never mutated: an event returned unchanged is the very object passed in, so a
    caller may re-send its original bytes. Malformed events pass through as they are.
    """

    def __init__(self, api: Api, new_editor: Callable[[], TextStream] | None) -> None:
        self.api: Api = api
        self._editing = new_editor is not None
        self._new_editor: Callable[[], TextStream] = new_editor or _Identity
        self.usage: Usage | None = None
        self.text_chars = 0
        # chat: (choice index, field) -> editor; the last chunk's top level, for inserted chunks
        self._chat: dict[tuple[int, str], TextStream] = {}
        self._envelope: Json = {}
        # messages: block key -> (editor, the block's index as sent); usage counts so far
        self._blocks: dict[object, tuple[TextStream, object]] = {}
        self._counts: dict[str, int] = {}
        # responses: (output index, content index) -> part state; renumbering
        self._parts: dict[tuple[int, int], _Part] = {}
        self._shift = 0
        self._last_sequence: int | None = None

    def event(self, name: str | None, data: Any) -> list[Event]:
        """The events to emit instead of this one (often just this one)."""
        if self.api == "openai_chat":
            out = self._chat_event(name, data)
        elif self.api == "anthropic_messages":
            out = self._messages_event(name, data)
        elif self.api == "openai_responses":
            out = self._responses_event(name, data)
        else:
            out = [(name, data)]
        return out if self._editing else [(name, data)]

    def finish(self) -> list[Event]:
        """At the end of the stream: the text still held back (a stream cut off before its end
        events), as delta events."""
        if self.api == "openai_chat":
            out = self._chat_flush_all()
        elif self.api == "anthropic_messages":
            out = self._messages_flush_all()
        elif self.api == "openai_responses":
            out = self._responses_flush_all()
        else:
            out = []
        return out if self._editing else []

    def _feed(self, editor: TextStream, text: str) -> str:
        self.text_chars += len(text)
        return editor.feed(text)

    # ---- chat ----

    def _chat_event(self, name: str | None, data: Any) -> list[Event]:
        if isinstance(data, str) and data.strip() == "[DONE]":
            return [*self._chat_flush_all(), (name, data)]
        if not isinstance(data, dict):
            return [(name, data)]
        if data.get("error") is not None or name == "error":
            return [*self._chat_flush_all(), (name, data)]
        usage = data.get("usage")
        if isinstance(usage, dict):
            self.usage = _usage(usage.get("prompt_tokens"), usage.get("completion_tokens")) or (
                self.usage
            )
        self._envelope = {key: value for key, value in data.items() if key != "choices"}
        if self._envelope.get("usage") is not None:
            self._envelope["usage"] = None  # an inserted chunk must not count the usage again
        choices = data.get("choices")
        if not isinstance(choices, list):
            return [(name, data)]
        before: list[Event] = []
        new_choices: list[Any] = []
        changed = False
        for choice in choices:
            new_choice = self._chat_choice(choice, before)
            changed = changed or new_choice is not choice
            new_choices.append(new_choice)
        out = {**data, "choices": new_choices} if changed else data
        return [*before, (name, out)]

    def _chat_choice(self, choice: Any, before: list[Event]) -> Any:
        """One choice of a chunk, its text edited; flushes for a finished choice go to `before`."""
        if not isinstance(choice, dict):
            return choice
        index = _index(choice.get("index", 0))
        finished = choice.get("finish_reason") is not None
        delta = choice.get("delta")
        new_delta: Json = delta if isinstance(delta, dict) else {}
        for field in _CHAT_FIELDS:
            text = new_delta.get(field)
            if not isinstance(text, str) or not text:
                continue
            editor = self._chat.get((index, field))
            if editor is None:
                editor = self._chat[(index, field)] = self._new_editor()
            edited = self._feed(editor, text)
            if finished:
                edited += editor.flush()
                del self._chat[(index, field)]
            if edited != text:
                new_delta = {**new_delta, field: edited}
        if finished:
            for field in _CHAT_FIELDS:
                editor = self._chat.pop((index, field), None)
                if editor is not None:
                    before += self._chat_chunk(choice.get("index", 0), field, editor.flush())
        if not isinstance(delta, dict) or new_delta is delta:
            return choice
        return {**choice, "delta": new_delta}

    def _chat_chunk(self, index: object, field: str, text: str) -> list[Event]:
        if not text:
            return []
        choice = {"index": index, "delta": {field: text}, "logprobs": None, "finish_reason": None}
        return [(None, {**self._envelope, "choices": [choice]})]

    def _chat_flush_all(self) -> list[Event]:
        out: list[Event] = []
        for (index, field), editor in list(self._chat.items()):
            out += self._chat_chunk(index, field, editor.flush())
        self._chat.clear()
        return out

    # ---- messages ----

    def _messages_event(self, name: str | None, data: Any) -> list[Event]:
        if not isinstance(data, dict):
            return [(name, data)]
        kind = _kind(name, data)
        if kind == "message_start":
            message = data.get("message")
            self._count_messages(message.get("usage") if isinstance(message, dict) else None)
        elif kind == "message_delta":
            self._count_messages(data.get("usage"))
        if kind == "content_block_start":
            block = data.get("content_block")
            if isinstance(block, dict) and block.get("type") == "text":
                editor = self._block_editor(data.get("index"))
                text = block.get("text")
                if isinstance(text, str) and text:
                    edited = self._feed(editor, text)
                    if edited != text:
                        return [(name, {**data, "content_block": {**block, "text": edited}})]
        elif kind == "content_block_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta":
                text = delta.get("text")
                if isinstance(text, str) and text:
                    edited = self._feed(self._block_editor(data.get("index")), text)
                    if edited != text:
                        return [(name, {**data, "delta": {**delta, "text": edited}})]
        elif kind == "content_block_stop":
            found = self._blocks.pop(_key(data.get("index")), None)
            if found is not None:
                return [*self._messages_delta(found[1], found[0].flush()), (name, data)]
        elif kind in ("message_delta", "message_stop", "error"):
            return [*self._messages_flush_all(), (name, data)]
        return [(name, data)]

    def _block_editor(self, index: object) -> TextStream:
        key = _key(index)
        found = self._blocks.get(key)
        if found is None:
            found = self._blocks[key] = (self._new_editor(), index)
        return found[0]

    def _messages_delta(self, index: object, text: str) -> list[Event]:
        if not text:
            return []
        delta = {"type": "content_block_delta", "index": index}
        return [("content_block_delta", {**delta, "delta": {"type": "text_delta", "text": text}})]

    def _messages_flush_all(self) -> list[Event]:
        out: list[Event] = []
        for editor, index in self._blocks.values():
            out += self._messages_delta(index, editor.flush())
        self._blocks.clear()
        return out

    def _count_messages(self, usage: object) -> None:
        """message_start's usage, then message_delta's (cumulative counts, some of them)."""
        if not isinstance(usage, dict):
            return
        for key in (
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "output_tokens",
        ):
            value = _count(usage.get(key))
            if value is not None:
                self._counts[key] = value
        if "input_tokens" in self._counts and "output_tokens" in self._counts:
            self.usage = Usage(
                self._counts["input_tokens"]
                + self._counts.get("cache_creation_input_tokens", 0)
                + self._counts.get("cache_read_input_tokens", 0),
                self._counts["output_tokens"],
            )

    # ---- responses ----

    def _responses_event(self, name: str | None, data: Any) -> list[Event]:
        if not isinstance(data, dict):
            return [(name, data)]
        kind = _kind(name, data)
        before: list[Event] = []
        out = data
        if kind == "response.content_part.added":
            out = self._responses_part_added(data)
        elif kind in ("response.output_text.delta", "response.refusal.delta"):
            out = self._responses_delta(data, kind)
        elif kind in ("response.output_text.done", "response.refusal.done"):
            key = _where(data)
            before = self._responses_flush(key)
            field = "text" if kind == "response.output_text.done" else "refusal"
            part_kind = "output_text" if field == "text" else "refusal"
            out = self._responses_whole(data, field, key, part_kind)
        elif kind == "response.content_part.done":
            key = _where(data)
            before = self._responses_flush(key)
            part = data.get("part")
            if isinstance(part, dict):
                new_part = self._responses_part(part, key)
                out = data if new_part is part else {**data, "part": new_part}
        elif kind in ("response.output_item.added", "response.output_item.done"):
            out, before = self._responses_item(data, kind == "response.output_item.done")
        elif kind in _RESPONSES_ENDS:
            before = self._responses_flush_all()
            out = self._responses_final(data)
        if kind in _RESPONSES_ENDS or kind == "response.in_progress":
            response = data.get("response")
            usage = response.get("usage") if isinstance(response, dict) else None
            if isinstance(usage, dict):
                found = _usage(usage.get("input_tokens"), usage.get("output_tokens"))
                self.usage = found or self.usage
        return [*before, (name, self._renumber(out))]

    def _renumber(self, data: Json) -> Json:
        """Sequence numbers stay consecutive after the events this editor inserted."""
        sequence = _count(data.get("sequence_number"))
        if sequence is None:
            return data
        self._last_sequence = sequence + self._shift
        return data if not self._shift else {**data, "sequence_number": self._last_sequence}

    def _inserted(self, data: Json) -> Event:
        """An event this editor adds: numbered after the last one sent, shifting the rest."""
        if self._last_sequence is not None:
            self._last_sequence += 1
            self._shift += 1
            data = {"type": data["type"], "sequence_number": self._last_sequence, **data}
        return (data["type"], data)

    def _state(self, key: tuple[int, int], part_kind: str, item_id: object) -> _Part:
        state = self._parts.get(key)
        if state is None:
            state = self._parts[key] = _Part(part_kind, self._new_editor(), item_id)
        if state.item_id is None:
            state.item_id = item_id
        return state

    def _responses_part_added(self, data: Json) -> Json:
        part = data.get("part")
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(part, dict) or not isinstance(kind, str) or kind not in _RESPONSES_PARTS:
            return data
        key = _where(data)
        state = self._state(key, kind, data.get("item_id"))
        field = _RESPONSES_PARTS[kind][0]
        text = part.get(field)
        if not isinstance(text, str) or not text:
            return data
        if state.editor is None:  # a part added again after its .done
            state.editor = self._new_editor()
        edited = self._feed(state.editor, text)  # a part that opens with text: its first piece
        state.emitted += edited
        return data if edited == text else {**data, "part": {**part, field: edited}}

    def _responses_delta(self, data: Json, kind: str) -> Json:
        text = data.get("delta")
        if not isinstance(text, str) or not text:
            return data
        part_kind = "output_text" if kind == "response.output_text.delta" else "refusal"
        state = self._state(_where(data), part_kind, data.get("item_id"))
        if state.editor is None:  # the text is over: a delta after .done is a new stretch
            state.editor = self._new_editor()
        edited = self._feed(state.editor, text)
        state.emitted += edited
        return data if edited == text else {**data, "delta": edited}

    def _responses_flush(self, key: tuple[int, int]) -> list[Event]:
        """Close the part's editor; its held-back text as a delta event."""
        state = self._parts.get(key)
        if state is None or state.editor is None:
            return []
        held = state.editor.flush()
        state.editor = None
        if not held:
            return []
        state.emitted += held
        prefix = _RESPONSES_PARTS[state.kind][1]
        fields: Json = {
            "type": f"{prefix}.delta",
            "item_id": state.item_id if state.item_id is not None else "",
            "output_index": key[0],
            "content_index": key[1],
            "delta": held,
        }
        if state.kind == "output_text":
            fields["logprobs"] = []
        return [self._inserted(fields)]

    def _responses_flush_all(self) -> list[Event]:
        return [event for key in list(self._parts) for event in self._responses_flush(key)]

    def _emitted(self, key: tuple[int, int], part_kind: str, text: str) -> str:
        """The whole text to carry for a part: what its deltas said, else `text` edited now."""
        state = self._parts.get(key)
        if state is None:  # never streamed: edit it whole, and remember it for later events
            state = self._parts[key] = _Part(part_kind, None, None)
            editor = self._new_editor()
            state.emitted = self._feed(editor, text) + editor.flush()
        return state.emitted

    def _responses_whole(self, data: Json, field: str, key: tuple[int, int], kind: str) -> Json:
        text = data.get(field)
        if not isinstance(text, str):
            return data
        whole = self._emitted(key, kind, text)
        return data if whole == text else {**data, field: whole}

    def _responses_part(self, part: Json, key: tuple[int, int]) -> Json:
        kind = part.get("type")
        if not isinstance(kind, str) or kind not in _RESPONSES_PARTS:
            return part
        field = _RESPONSES_PARTS[kind][0]
        text = part.get(field)
        if not isinstance(text, str):
            return part
        whole = self._emitted(key, kind, text)
        return part if whole == text else {**part, field: whole}

    def _responses_item(self, data: Json, done: bool) -> tuple[Json, list[Event]]:
        """output_item.done: the item's parts carry what was emitted for them. (output_item.added
        passes as it is: the API opens a message item empty, its parts come with their events.)"""
        item = data.get("item")
        output_index = _count(data.get("output_index"))
        if not done or not isinstance(item, dict) or item.get("type") != "message":
            return data, []
        if output_index is None or not isinstance(item.get("content"), list):
            return data, []
        before: list[Event] = []
        for key in [key for key in self._parts if key[0] == output_index]:
            before += self._responses_flush(key)
        new_item = copy.deepcopy(item)
        _edit_item_parts(new_item, output_index, self._emitted, empty=True)
        return (data if new_item == item else {**data, "item": new_item}), before

    def _responses_final(self, data: Json) -> Json:
        response = data.get("response")
        if not isinstance(response, dict):
            return data
        new_response = copy.deepcopy(response)
        _edit_responses_output(new_response, self._emitted, empty=True)
        return data if new_response == response else {**data, "response": new_response}


@dataclass(slots=True)
class _Part:
    """A Responses content part being streamed: its editor while open, the text emitted."""

    kind: str  # output_text or refusal
    editor: TextStream | None
    item_id: object
    emitted: str = ""


def _kind(name: str | None, data: Json) -> str | None:
    """The event's type: the payload's own `type`, else the SSE event name."""
    kind = data.get("type")
    return kind if isinstance(kind, str) else name


def _index(value: object) -> int:
    """A choice or block index; a malformed one is still somebody's text, so it counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _key(value: object) -> object:
    return value if isinstance(value, int) and not isinstance(value, bool) else repr(value)


def _where(data: Json) -> tuple[int, int]:
    return _index(data.get("output_index", 0)), _index(data.get("content_index", 0))


# ---- SSE framing -------------------------------------------------------------------------------


def encode_event(api: Api, name: str | None, data: Any) -> bytes:
    """One SSE frame as the API writes it, and as turnout's translators write it.

    Chat: `data: <json>` alone (compact JSON, as OpenAI sends chunks), with an `event:` line
    only for a name other than the default `message` (an upstream's `event: error`). Messages
    and Responses: `event: <name>` then `data: <json>`; without a name, the payload's `type`
    names it (the anthropic SDK skips unnamed events). A string `data` is written as it is: chat's
    terminal `[DONE]` is `data == "[DONE]"`, as `edit_sse` passes on any data that is not JSON.
    """
    if isinstance(data, str):
        payload = data
    elif api == "openai_chat":
        payload = json.dumps(data, separators=(",", ":"))
    else:
        payload = json.dumps(data)
    if name == "message":
        name = None
    if name is None and api != "openai_chat" and isinstance(data, dict):
        kind = data.get("type")
        name = kind if isinstance(kind, str) and kind else None
    lines = [] if name is None else [f"event: {name}"]
    lines += [f"data: {line}" for line in payload.split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


async def edit_sse(
    chunks: AsyncIterator[bytes], editor: StreamTextEditor, api: Api
) -> AsyncIterator[bytes]:
    """A client-format SSE byte stream with `editor` applied, re-encoded, chunk by chunk.

    Events are split by turnout's SSE decoder (lines and characters may span chunks). Data that
    is not JSON (`[DONE]`) is passed on as a string, and an event the editor returns unchanged
    is written with its original data text. Comment lines (keep-alives) are passed on; `id:`
    and `retry:` fields, which none of the three APIs send, are not. An event left unfinished
    when the stream ends is discarded, as the spec says, and then whatever the editor still
    holds is flushed. If `chunks` raises, held-back text is dropped (the stream failed anyway).
    """
    decoder = SSEDecoder()
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    async for chunk in chunks:
        *lines, pending = (pending + text.decode(chunk)).split("\n")
        out: list[bytes] = []
        for line in lines:
            line = line.removesuffix("\r")
            if line.startswith(":"):
                out.append(f"{line}\n\n".encode())
                continue
            decoded = decoder.feed(line)
            if decoded is not None:
                out += _edit_one(api, editor, *decoded)
        if out:
            yield b"".join(out)
    tail = editor.finish()
    if tail:
        yield b"".join(encode_event(api, name, data) for name, data in tail)


def _edit_one(api: Api, editor: StreamTextEditor, name: str, raw: str) -> list[bytes]:
    try:
        data: Any = json.loads(raw)
    except ValueError:
        data = raw
    frames = []
    for out_name, out_data in editor.event(None if name == "message" else name, data):
        # The same object back means untouched: keep the upstream's own data text.
        frames.append(encode_event(api, out_name, raw if out_data is data else out_data))
    return frames
