"""W3C trace context: the caller's span context from `traceparent`, the ids of a new trace, and
the `traceparent` turnout passes on."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping

from opentelemetry.trace import SpanContext, TraceFlags, TraceState

# A later version may add fields after the flags; version 00 has exactly these four.
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_INVALID_TRACE_ID = "0" * 32
_INVALID_PARENT_ID = "0" * 16


def remote_parent(headers: Mapping[str, str]) -> SpanContext | None:
    """The caller's span context from `traceparent` (and `tracestate`) when valid per W3C: not
    all-zero ids, not version ff, uppercase hex accepted. `headers` must look names up without
    regard to case (Starlette's do), or have them in lowercase."""
    traceparent = headers.get("traceparent")
    if not traceparent:
        return None
    match = _TRACEPARENT.match(traceparent.strip().lower())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if (
        version == "ff"
        or (version == "00" and rest)
        or trace_id == _INVALID_TRACE_ID
        or span_id == _INVALID_PARENT_ID
    ):
        return None
    tracestate = headers.get("tracestate")
    return SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(flags, 16)),
        trace_state=TraceState.from_header([tracestate]) if tracestate else None,
    )


# Ids need to be unique, not secret: OpenTelemetry's own generator uses getrandbits too, and it
# costs no system call per request (os.urandom does).
def new_trace_id() -> int:
    return random.getrandbits(128) or 1


def new_span_id() -> int:
    return random.getrandbits(64) or 1


def context_headers(
    trace_id: int, span_id: int, flags: int, trace_state: TraceState | None = None
) -> dict[str, str]:
    """`traceparent`, and `tracestate` when there is one, naming `span_id` as the parent; flags
    01: sampled."""
    headers = {"traceparent": f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"}
    if trace_state:
        headers["tracestate"] = trace_state.to_header()
    return headers
