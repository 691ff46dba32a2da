"""Finished spans as an OTLP `ExportTraceServiceRequest`, in protobuf's wire format.

The OTLP exporters' own encoder builds a protobuf object for every span, attribute and value
through several Python calls each: ~110 µs for one proxied request's four spans, a quarter of
the gateway's CPU per request, spent in its process by the batch processor's thread. Writing
the bytes directly, with the fields that repeat from request to request (attribute keys and
most values, span names) encoded once and remembered, takes a fifth of that. The bytes parse to
the message the exporters' encoder makes for the same spans (tests/test_otlp_encoding.py holds
them to it), so a collector cannot tell them apart.

Field numbers are those of opentelemetry-proto's trace.proto, common.proto and resource.proto
(OTLP v1, stable).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceState

_log = logging.getLogger(__name__)

# SpanFlags: the span says whether its parent is remote, and whether it is.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
# Encoded pieces remembered (attribute key-values, names); the table is emptied when it is
# full, since a few values (a client's model name, a header) are not from a bounded set.
CACHE_LIMIT = 4096
_VARINTS = [bytes([n]) for n in range(128)]
_DOUBLE = struct.Struct("<d")


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """The request body for OTLP/HTTP (and, parsed, for OTLP/gRPC) exporting `spans`, grouped by
    resource and instrumentation scope as the exporters' encoder groups them, except that two
    equal resources that are different objects make two groups (the exporters compare them by
    a hash that serialises the resource to JSON for every span; turnout has one resource)."""
    groups: dict[int, tuple[Resource, dict[Any, list[bytes]]]] = {}
    for span in spans:
        resource = span.resource
        group = groups.get(id(resource))
        if group is None:
            group = groups[id(resource)] = (resource, {})
        group[1].setdefault(span.instrumentation_scope, []).append(_span(span))
    out = []
    for resource, scopes in groups.values():
        resource_spans = [_message(b"\x0a", _resource(resource))]  # resource = 1
        for scope, encoded in scopes.items():
            scope_spans = [_message(b"\x0a", _scope(scope))]  # scope = 1
            scope_spans += [_message(b"\x12", span) for span in encoded]  # spans = 2
            if scope is not None and scope.schema_url:
                scope_spans.append(_text(b"\x1a", scope.schema_url))  # schema_url = 3
            resource_spans.append(_message(b"\x12", b"".join(scope_spans)))  # scope_spans = 2
        if resource.schema_url:
            resource_spans.append(_text(b"\x1a", resource.schema_url))  # schema_url = 3
        out.append(_message(b"\x0a", b"".join(resource_spans)))  # resource_spans = 1
    return b"".join(out)


def _span(span: ReadableSpan) -> bytes:
    context = span.get_span_context()
    assert context is not None  # a finished span always has one
    parts = [
        b"\x0a\x10",  # trace_id = 1, 16 bytes
        context.trace_id.to_bytes(16, "big"),
        b"\x12\x08",  # span_id = 2, 8 bytes
        context.span_id.to_bytes(8, "big"),
    ]
    if context.trace_state:
        parts.append(_text(b"\x1a", _trace_state(context.trace_state)))  # trace_state = 3
    parent = span.parent
    if parent is not None:
        parts += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))  # parent_span_id = 4
    parts.append(_name(span.name))
    parts.append(_KINDS[id(span.kind)])  # kind = 6
    parts += (b"\x39", (span.start_time or 0).to_bytes(8, "little"))  # start = 7, fixed64
    parts += (b"\x41", (span.end_time or 0).to_bytes(8, "little"))  # end = 8, fixed64
    parts += _attributes(b"\x4a", span.attributes)  # attributes = 9
    parts += _count(b"\x50", span.dropped_attributes)  # dropped_attributes_count = 10
    for event in span.events:  # events = 11
        event_parts = [b"\x09", event.timestamp.to_bytes(8, "little"), _text(b"\x12", event.name)]
        event_parts += _attributes(b"\x1a", event.attributes)
        event_parts += _count(b"\x20", event.dropped_attributes)
        parts.append(_message(b"\x5a", b"".join(event_parts)))
    parts += _count(b"\x60", span.dropped_events)  # dropped_events_count = 12
    parts += [_message(b"\x6a", _link(link)) for link in span.links]  # links = 13
    parts += _count(b"\x70", span.dropped_links)  # dropped_links_count = 14
    parts.append(_status(span.status))
    parts += (b"\x85\x01", _flags(parent).to_bytes(4, "little"))  # flags = 16, fixed32
    return b"".join(parts)


def _link(link: Link) -> bytes:
    context = link.context
    parts = [
        b"\x0a\x10",  # trace_id = 1
        context.trace_id.to_bytes(16, "big"),
        b"\x12\x08",  # span_id = 2
        context.span_id.to_bytes(8, "big"),
    ]
    # trace_state = 3 is left out, as the exporters' encoder leaves it out
    parts += _attributes(b"\x22", link.attributes)  # attributes = 4
    parts += _count(b"\x28", link.dropped_attributes)  # dropped_attributes_count = 5
    parts += (b"\x35", _flags(context).to_bytes(4, "little"))  # flags = 6, fixed32
    return b"".join(parts)


def _status(status: Status) -> bytes:
    """status = 15, always present (message = 2, code = 3)."""
    if status.status_code is StatusCode.UNSET and not status.description:
        return _UNSET
    parts = []
    if status.description:
        parts.append(_text(b"\x12", status.description))
    if status.status_code.value:
        parts += (b"\x18", _varint(status.status_code.value))
    return _message(b"\x7a", b"".join(parts))


def _resource(resource: Resource) -> bytes:
    return b"".join(_attributes(b"\x0a", resource.attributes))  # attributes = 1


def _scope(scope: InstrumentationScope | None) -> bytes:
    """name = 1, version = 2, attributes = 3; an absent scope is an empty one."""
    if scope is None:
        return b""
    parts = [_text(b"\x0a", scope.name)] if scope.name else []
    if scope.version:
        parts.append(_text(b"\x12", scope.version))
    return b"".join(parts + _attributes(b"\x1a", scope.attributes))


def _flags(parent: SpanContext | None) -> int:
    if parent is not None and parent.is_remote:
        return _HAS_IS_REMOTE | _IS_REMOTE
    return _HAS_IS_REMOTE


def _trace_state(state: TraceState) -> str:
    return ",".join(f"{key}={value}" for key, value in state.items())


# ---------------------------------------------------------------------- attributes


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> list[bytes]:
    """Each attribute as a KeyValue field `tag`; one the exporters' encoder would refuse (a
    value of another type, text that is not UTF-8) is left out and logged, as it does."""
    if not attributes:
        return []
    parts = []
    for key, value in attributes.items():
        if value.__class__ is float:  # a measurement: almost never seen twice
            remembered = piece = None
        else:
            remembered = (tag, key, value.__class__, value)
            try:
                piece = _pieces.get(remembered)
            except TypeError:  # not hashable (a list): encoded each time
                remembered = piece = None
        if piece is None:
            try:
                piece = _message(tag, _key_value(key, value))
            except (TypeError, ValueError) as error:
                _log.error("tracing: attribute %s not exported: %s", key, error)
                continue
            if remembered is not None:
                _remember(remembered, piece)
        parts.append(piece)
    return parts


def _key_value(key: str, value: Any) -> bytes:
    """A KeyValue: key = 1, value = 2 (an AnyValue, present even when empty)."""
    return _text(b"\x0a", key) + _message(b"\x12", _any_value(value))


def _any_value(value: Any) -> bytes:
    """An AnyValue's one field, in the exporters' encoder's order of type checks. The fields
    are a `oneof`, so a zero value is still written."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"  # bool_value = 2
    if isinstance(value, str):
        return _text(b"\x0a", value)  # string_value = 1
    if isinstance(value, int):  # int_value = 3: an int64, in two's complement
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"{value} is out of an int64's range")
        return b"\x18" + _varint(value & 0xFFFF_FFFF_FFFF_FFFF)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)  # double_value = 4
    if isinstance(value, bytes):
        return _message(b"\x3a", value)  # bytes_value = 7
    if isinstance(value, Sequence):  # array_value = 5: ArrayValue, values = 1
        return _message(b"\x2a", b"".join(_message(b"\x0a", _any_value(v)) for v in value))
    if isinstance(value, Mapping):  # kvlist_value = 6: KeyValueList, values = 1
        pairs = b"".join(_message(b"\x0a", _key_value(str(k), v)) for k, v in value.items())
        return _message(b"\x32", pairs)
    raise TypeError(f"invalid type {type(value).__name__}")


# ---------------------------------------------------------------------- wire format


_pieces: dict[Any, bytes] = {}


def _remember(key: Any, piece: bytes) -> bytes:
    if len(_pieces) >= CACHE_LIMIT:
        _pieces.clear()
    _pieces[key] = piece
    return piece


def _name(name: str) -> bytes:
    piece = _pieces.get(name)
    return piece if piece is not None else _remember(name, _text(b"\x2a", name))  # name = 5


def _count(tag: bytes, count: int) -> tuple[bytes, ...]:
    """A uint32 field, absent at 0 (proto3)."""
    return (tag, _varint(count)) if count else ()


def _text(tag: bytes, text: str) -> bytes:
    return _message(tag, text.encode())


def _message(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: a string, bytes or an embedded message."""
    return tag + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _VARINTS[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# OTLP's span kinds are the SDK's plus one (0 is "unspecified"); keyed by identity, since an
# enum member's hash is computed in Python.
_KINDS = {id(kind): b"\x30" + _varint(kind.value + 1) for kind in SpanKind}
_UNSET = b"\x7a\x00"
