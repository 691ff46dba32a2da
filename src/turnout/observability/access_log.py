"""One JSON line per request: what an operator greps for when a user says "my request failed".

Written to stdout by default (the container's log), never with prompt or answer text, never
with a key's secret (only its configured name).
"""

from __future__ import annotations

import asyncio
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


FLUSH_SECONDS = 0.25
FLUSH_LINES = 256


class AccessLog:
    """Lines are written in batches, a quarter of a second apart at most (or every 256 lines):
    one system call per line cost as much as the rest of the telemetry together."""

    def __init__(self, enabled: bool = True, out: IO[str] | None = None) -> None:
        self.enabled = enabled
        self._out = out
        self._pending: list[str] = []
        self._flush_scheduled = False

    def write(self, record: RequestRecord) -> None:
        if not self.enabled:
            return
        self._pending.append(json.dumps(access_entry(record), separators=(",", ":")))
        if len(self._pending) >= FLUSH_LINES:
            self.flush()
        elif not self._flush_scheduled:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a script, a test): write now
            self.flush()
            return
        self._flush_scheduled = True
        loop.call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        out = self._out or sys.stdout
        out.write("\n".join(lines) + "\n")
        out.flush()
