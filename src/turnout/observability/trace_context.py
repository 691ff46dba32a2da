"""W3C trace context: continue the caller's trace id, or start a new one."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_INVALID_TRACE_ID = "0" * 32
_INVALID_PARENT_ID = "0" * 16


def trace_id_from(traceparent: str | None) -> str:
    """The incoming trace id when the header is valid per the W3C spec, else a fresh one."""
    if traceparent:
        match = _TRACEPARENT.match(traceparent.strip().lower())
        if match:
            version, trace_id, parent_id, _flags = match.groups()
            if (
                version != "ff"
                and trace_id != _INVALID_TRACE_ID
                and parent_id != _INVALID_PARENT_ID
            ):
                return trace_id
    # Trace ids need to be unique, not secret: OpenTelemetry's own generator uses getrandbits
    # too, and it costs no system call per request (os.urandom does).
    return f"{random.getrandbits(128) or 1:032x}"


def trace_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The caller's trace context, for the services turnout calls on its behalf (filters)."""
    traceparent = headers.get("traceparent")
    return {"traceparent": traceparent} if traceparent else {}
