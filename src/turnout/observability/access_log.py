"""One JSON line per request: what an operator greps for when a user says "my request failed".

Written to stdout by default (the container's log), never with prompt or answer text, never
with a key's secret (only its configured name).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import IO, Any

from turnout.observability.record import RequestRecord


def access_entry(record: RequestRecord) -> dict[str, Any]:
    return {
        "time": datetime.fromtimestamp(record.started_at, UTC).isoformat(timespec="milliseconds"),
        "request_id": record.trace_id,
        "trace_id": record.trace_id,
        "client_key": record.client_key,
        "endpoint": record.endpoint,
        "kind": record.kind,
        "stream": record.stream,
        "requested_model": record.requested_model,
        "route": record.route,
        "router": record.router,
        "router_fallback": record.router_fallback,
        "model": record.model,
        "attempts": len(record.attempts),
        "attempted": [f"{a.model}:{a.status or a.outcome}" for a in record.attempts],
        "status": record.status,
        "rejection": record.rejection,
        "guard_events": record.guard_events,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "cost_usd": None if record.cost_usd is None else round(record.cost_usd, 8),
        "latency_ms": None if record.latency_ms is None else round(record.latency_ms, 3),
        "ttft_ms": None if record.ttft_ms is None else round(record.ttft_ms, 3),
    }


class AccessLog:
    def __init__(self, enabled: bool = True, out: IO[str] | None = None) -> None:
        self.enabled = enabled
        self._out = out

    def write(self, record: RequestRecord) -> None:
        if not self.enabled:
            return
        out = self._out or sys.stdout
        out.write(json.dumps(access_entry(record), separators=(",", ":")) + "\n")
        out.flush()
