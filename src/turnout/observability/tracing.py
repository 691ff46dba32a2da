"""OpenTelemetry tracing for turnout: one SERVER span per request, continuing the client's W3C
trace, with children for guardrails, the routing decision and each upstream attempt, exported
over OTLP. Off unless configured; then each request is sampled once, as it arrives, with the
configured sampler, and an unsampled one costs that decision alone.

A sampled request records plain ids and timestamps as it goes (a span's id is fixed when it
starts, since it goes out in `traceparent`), and its OpenTelemetry spans are made once it has
ended, finished, and handed to the span processor: the SDK's live spans cost ~30 µs each (a
lock, attribute validation, context switching), a finished ReadableSpan a few. turnout has no
TracerProvider and never touches the process-global one, so an application that embeds turnout
(or a test that builds two gateways) keeps its own tracing untouched.

Attribute names follow the OpenTelemetry GenAI semantic conventions (development status, now
kept at github.com/open-telemetry/semantic-conventions-genai); turnout's own are `turnout.*`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import unquote, urlsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.sdk.version import __version__ as _SDK_VERSION
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util.types import AttributeValue

from turnout import __version__
from turnout.observability.record import RequestRecord
from turnout.observability.trace_context import context_headers, new_span_id

if TYPE_CHECKING:
    from turnout.config.schema import Tracing as TracingConfig
    from turnout.routing.decision import Decision

AttrValue = AttributeValue
Attributes = dict[str, AttrValue]
OtlpProtocol = Literal["grpc", "http/protobuf"]

_log = logging.getLogger(__name__)

# GenAI semantic conventions (semantic-conventions-genai; `gen_ai.system` was replaced by
# `gen_ai.provider.name`). Strings rather than the incubating `opentelemetry-semantic-conventions`
# constants, which are all marked deprecated ("moved") and would pin turnout to that package.
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"  # seconds
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
CHAT = "chat"
# Stable general conventions.
ERROR_TYPE = "error.type"
HTTP_ROUTE = "http.route"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
SERVICE_NAME = "service.name"
SERVICE_VERSION = "service.version"

# turnout's provider prefixes that have a well-known `gen_ai.provider.name` value; the others
# (together_ai, fireworks, openrouter, ollama, vllm, plano...) are reported as they are, which is
# what the convention asks for a provider it does not list.
_PROVIDER_NAMES = {
    "azure_openai": "azure.ai.openai",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "xai": "x_ai",
}

# Span names the lead's call sites use, so the doc and the code agree.
SPAN_GUARDRAILS = "turnout.guardrails"
SPAN_ROUTING = "turnout.routing"
SPAN_FILTER = "turnout.filter"

_DEFAULT_SERVICE = "turnout"
_DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
_DEFAULT_HTTP_ENDPOINT = "http://localhost:4318/v1/traces"


class Message(Protocol):
    """A prompt message as turnout already holds it (`routing.conversation.Turn` fits)."""

    @property
    def role(self) -> str: ...

    @property
    def text(self) -> str: ...


class UpstreamTarget(Protocol):
    """What a span needs of `providers.upstream.Target` (kept structural: no aiohttp import)."""

    @property
    def model_id(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def url(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ExportSettings:
    """Where spans go: the outcome of weighing Plano's block against the OTEL_* variables."""

    protocol: OtlpProtocol
    endpoint: str
    headers: dict[str, str]
    source: Literal["plano", "env", "default"]


class Step:
    """A child span of a sampled request (guardrails, routing, an upstream attempt), timed as
    it goes: its id is fixed when it starts, its attributes set when it ends."""

    __slots__ = ("attributes", "end", "kind", "name", "span_id", "start")

    def __init__(self, name: str, kind: SpanKind) -> None:
        self.name = name
        self.kind = kind
        self.span_id = new_span_id()
        self.start = time.time_ns()
        self.end = 0  # not ended yet
        self.attributes: Attributes = {}


class Trace:
    """A sampled request's trace until it ends: the SERVER span's ids and start, its attributes
    so far, and its steps."""

    __slots__ = (
        "attributes",
        "name",
        "parent",
        "span_id",
        "start",
        "steps",
        "trace_id",
        "trace_state",
    )

    def __init__(
        self,
        name: str,
        trace_id: int,
        parent: SpanContext | None,
        trace_state: TraceState | None,
        attributes: Attributes,
    ) -> None:
        self.name = name
        self.trace_id = trace_id
        self.span_id = new_span_id()
        self.parent = parent
        self.trace_state = trace_state
        self.start = time.time_ns()
        self.attributes = attributes
        self.steps: list[Step] = []

    def begin(self, name: str, kind: SpanKind = SpanKind.INTERNAL) -> Step:
        step = Step(name, kind)
        self.steps.append(step)
        return step

    def context_headers(self, step: Step | None = None) -> dict[str, str]:
        """`traceparent` (and `tracestate`) naming `step`, else the request's span, as parent."""
        span_id = self.span_id if step is None else step.span_id
        return context_headers(self.trace_id, span_id, TraceFlags.SAMPLED, self.trace_state)


_SCOPE = InstrumentationScope("turnout", __version__)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)


class Tracing:
    """turnout's tracing: which requests are sampled, and their spans, sent to a span processor
    (a batch processor in the gateway). With no processor it is off."""

    def __init__(
        self,
        processor: SpanProcessor | None,
        *,
        sampler: Sampler = ALWAYS_ON,
        resource: Resource | None = None,
        static_attributes: Mapping[str, str] | None = None,
        header_prefixes: Sequence[str] = (),
        record_content: bool = False,
    ) -> None:
        self._processor = processor
        self._sampler = sampler
        self._resource = resource or resource_from({})
        self._static: Attributes = dict(static_attributes or {})
        self._prefixes = tuple(p.lower() for p in header_prefixes if p)
        self.record_content = record_content
        self._shutdown_lock = threading.Lock()
        self._is_shut_down = False

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(
        cls,
        tracing: TracingConfig | None,
        env: Mapping[str, str] = os.environ,
        *,
        record_content: bool = False,
    ) -> Tracing:
        """Off unless Plano's `tracing` block or an OTEL_* variable asks for it (see
        `export_settings`); OTEL_SDK_DISABLED=true and OTEL_TRACES_EXPORTER=none always win.
        Plano's block wins over the variables for what both set (endpoint, sampling), as explicit
        arguments win over the environment in the OTel SDKs; the file can still read the
        environment through `${VAR}`."""
        span_attributes = tracing.span_attributes if tracing else None
        static = span_attributes.static if span_attributes else {}
        prefixes = span_attributes.header_prefixes if span_attributes else []
        settings = export_settings(tracing, env)
        if settings is None:
            return cls(
                None,
                static_attributes=static,
                header_prefixes=prefixes,
                record_content=record_content,
            )
        _log.info(
            "tracing: OTLP %s to %s (%s)", settings.protocol, settings.endpoint, settings.source
        )
        from turnout.observability.otlp_export import exporter  # loads grpc and requests

        return cls(
            BatchSpanProcessor(exporter(settings)),
            sampler=sampler_from(tracing, env),
            resource=resource_from(env),
            static_attributes=static,
            header_prefixes=prefixes,
            record_content=record_content,
        )

    @classmethod
    def with_exporter(
        cls,
        exporter: SpanExporter,
        *,
        sampler: Sampler = ALWAYS_ON,
        static_attributes: Mapping[str, str] | None = None,
        header_prefixes: Sequence[str] = (),
        record_content: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> Tracing:
        """For tests: every span exported synchronously as it ends (SimpleSpanProcessor)."""
        return cls(
            SimpleSpanProcessor(exporter),
            sampler=sampler,
            resource=resource_from(env or {}),
            static_attributes=static_attributes,
            header_prefixes=header_prefixes,
            record_content=record_content,
        )

    @property
    def enabled(self) -> bool:
        return self._processor is not None

    # ------------------------------------------------------------------ one request

    def sample(
        self,
        endpoint: str,
        trace_id: int,
        parent: SpanContext | None,
        headers: Mapping[str, str],
    ) -> Trace | None:
        """The trace of a request to `endpoint`, when the sampler keeps it (with tracing off,
        never): `parent` is the caller's context, `trace_id` its trace id or a new one."""
        if self._processor is None:
            return None
        name = f"POST {endpoint}"
        context = trace.set_span_in_context(NonRecordingSpan(parent)) if parent else None
        result = self._sampler.should_sample(context, trace_id, name, SpanKind.SERVER)
        if not result.decision.is_sampled():
            return None
        attributes = {**self._static, **self.header_attributes(headers), **result.attributes}
        return Trace(name, trace_id, parent, result.trace_state, attributes)

    def finish(
        self, trace: Trace, attributes: Mapping[str, AttrValue], error: BaseException | None = None
    ) -> None:
        """End a sampled request: its steps' spans, then its own with `attributes` (its outcome,
        usually `request_attributes(record)`), to the span processor. An `error.type` among a
        span's attributes marks it failed; a step still open ends now, failed with `error`, the
        exception that ended the request inside it."""
        processor = self._processor
        assert processor is not None  # only sampled requests have a Trace
        now = time.time_ns()
        server = SpanContext(trace.trace_id, trace.span_id, False, _SAMPLED, trace.trace_state)
        for step in trace.steps:
            events: tuple[Event, ...] = ()
            status = _status(step.attributes)
            if not step.end:
                step.end = now
                if error is not None:
                    events = (_exception_event(error, now),)
                    status = Status(StatusCode.ERROR, f"{type(error).__name__}: {error}")
            context = SpanContext(trace.trace_id, step.span_id, False, _SAMPLED, trace.trace_state)
            processor.on_end(
                ReadableSpan(
                    step.name,
                    context,
                    server,
                    self._resource,
                    {**self._static, **step.attributes},
                    events,
                    kind=step.kind,
                    status=status,
                    start_time=step.start,
                    end_time=step.end,
                    instrumentation_scope=_SCOPE,
                )
            )
        outcome = {**trace.attributes, **attributes}
        processor.on_end(
            ReadableSpan(
                trace.name,
                server,
                trace.parent,
                self._resource,
                outcome,
                kind=SpanKind.SERVER,
                status=_status(outcome),
                start_time=trace.start,
                end_time=now,
                instrumentation_scope=_SCOPE,
            )
        )

    def header_attributes(self, headers: Mapping[str, str]) -> Attributes:
        """Request headers named with a configured prefix, as Plano names them: the rest of the
        name, leading dashes dropped, dashes turned to dots (`x-tenant-user-id` with prefix
        `x-tenant-` becomes `user.id`); values trimmed."""
        if not self._prefixes:
            return {}
        attributes: Attributes = {}
        for name, value in headers.items():
            lowered = name.lower()
            prefix = next((p for p in self._prefixes if lowered.startswith(p)), None)
            if prefix is None:
                continue
            key = lowered[len(prefix) :].lstrip("-").replace("-", ".")
            if key:
                attributes[key] = value.strip()
        return attributes

    def content_attributes(
        self,
        messages: Sequence[Message] = (),
        completion: str | None = None,
        *,
        finish_reason: str | None = None,
    ) -> Attributes:
        """Prompt and completion text as `gen_ai.input.messages` / `gen_ai.output.messages`
        (JSON, the conventions' message shape), only when `record_content` is on: prompts carry
        personal data and secrets, so they stay out of traces unless the operator opts in."""
        if not self.record_content:
            return {}
        attributes: Attributes = {}
        if messages:
            attributes[GEN_AI_INPUT_MESSAGES] = json.dumps(
                [_message_json(m.role, m.text) for m in messages], ensure_ascii=False
            )
        if completion is not None:
            output = _message_json("assistant", completion)
            if finish_reason is not None:
                output["finish_reason"] = finish_reason
            attributes[GEN_AI_OUTPUT_MESSAGES] = json.dumps([output], ensure_ascii=False)
        return attributes

    # ------------------------------------------------------------------ lifecycle

    def shutdown(self) -> None:
        """Flush buffered spans and stop the export thread; safe to call twice."""
        with self._shutdown_lock:
            if self._is_shut_down or self._processor is None:
                return
            self._is_shut_down = True
        self._processor.shutdown()


# ---------------------------------------------------------------------- attribute helpers


def provider_name(provider: str) -> str:
    """turnout's provider prefix as `gen_ai.provider.name` (its well-known value when there is one)."""
    return _PROVIDER_NAMES.get(provider, provider)


def attempt_span_name(model: str) -> str:
    """The conventions' inference span name, `{operation} {model}`, for an upstream attempt."""
    return f"{CHAT} {model}"


def request_attributes(record: RequestRecord) -> Attributes:
    """The request's outcome for its SERVER span, set once at the end. GenAI attributes only for
    the proxy (the decision API calls no model); token usage lives here and not on the attempt
    spans, so a backend summing `gen_ai.usage.*` over a trace counts each request once."""
    attributes: Attributes = {
        HTTP_ROUTE: record.endpoint,
        "turnout.api": record.api,
        "turnout.kind": record.kind,
        "turnout.stream": record.stream,
        "turnout.attempts": len(record.attempts),
    }
    if record.status:
        attributes[HTTP_RESPONSE_STATUS_CODE] = record.status
    if record.status >= 500:
        attributes[ERROR_TYPE] = str(record.status)
    if record.kind == "proxy":
        attributes[GEN_AI_OPERATION_NAME] = CHAT
        if record.requested_model is not None:
            attributes[GEN_AI_REQUEST_MODEL] = record.requested_model
        if record.model is not None:
            provider, _, model = record.model.partition("/")
            attributes[GEN_AI_PROVIDER_NAME] = provider_name(provider)
            attributes[GEN_AI_RESPONSE_MODEL] = model or record.model
            attributes["turnout.model"] = record.model
        if record.input_tokens is not None:
            attributes[GEN_AI_USAGE_INPUT_TOKENS] = record.input_tokens
        if record.output_tokens is not None:
            attributes[GEN_AI_USAGE_OUTPUT_TOKENS] = record.output_tokens
        if record.stream and record.ttft_ms is not None:
            attributes[GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = record.ttft_ms / 1000
    elif record.requested_model is not None:
        attributes["turnout.requested_model"] = record.requested_model
    attributes.update(
        routing_attributes(
            record.router, record.route, record.router_fallback, record.router_latency_ms
        )
    )
    optional: dict[str, AttrValue | None] = {
        "turnout.cost_usd": record.cost_usd,
        "turnout.client_key": record.client_key,
        "turnout.rejection": record.rejection,
    }
    attributes.update({k: v for k, v in optional.items() if v is not None})
    attributes.update(guard_attributes(record.guard_events))
    return attributes


def routing_attributes(
    router: str | None,
    route: str | None,
    fallback: str | None = None,
    latency_ms: float | None = None,
) -> Attributes:
    """The routing decision: which router decided, the route (absent for no route), why the LLM
    router was not the one (`timeout`, `error`...), and how long it took."""
    attributes: Attributes = {}
    if router is not None:
        attributes["turnout.router"] = router
    if route is not None:
        attributes["turnout.route"] = route
    if fallback is not None:
        attributes["turnout.router.fallback"] = fallback
    if latency_ms is not None:
        attributes["turnout.router.latency_ms"] = latency_ms
    return attributes


def guard_attributes(events: Sequence[str]) -> Attributes:
    """Guard events (`pii.input.redact`) as `turnout.guard.pii.input = "redact"`: one queryable
    key per guard and direction, the action as its value."""
    attributes: Attributes = {}
    for event in events:
        guard, _, action = event.rpartition(".")
        if guard:
            attributes[f"turnout.guard.{guard}"] = action
    return attributes


def upstream_attributes(target: UpstreamTarget) -> Attributes:
    """An upstream attempt's span as it starts (`providers.upstream.Target`), with the
    conventions' `server.address`/`server.port` of the provider."""
    provider = target.model_id.partition("/")[0]
    attributes: Attributes = {
        GEN_AI_OPERATION_NAME: CHAT,
        GEN_AI_PROVIDER_NAME: provider_name(provider),
        GEN_AI_REQUEST_MODEL: target.model,
        "turnout.model": target.model_id,
    }
    return attributes | _server(target.url)


@lru_cache(maxsize=256)  # the configured providers' URLs
def _server(url: str) -> Attributes:
    """The conventions' `server.address`/`server.port` of a provider's URL."""
    parts = urlsplit(url)
    if not parts.hostname:
        return {}
    return {
        SERVER_ADDRESS: parts.hostname,
        SERVER_PORT: parts.port or (443 if parts.scheme == "https" else 80),
    }


def attempt_outcome_attributes(status: int, outcome: str) -> Attributes:
    """How an attempt ended. Any outcome other than `answered` is why the next candidate was
    tried; it, or the HTTP status when there was one (a 4xx is a failure for a client span),
    becomes `error.type`."""
    attributes: Attributes = {"turnout.attempt.outcome": outcome}
    if status:
        attributes[HTTP_RESPONSE_STATUS_CODE] = status
    if status >= 400:
        attributes[ERROR_TYPE] = str(status)
    elif outcome != "answered":
        attributes[ERROR_TYPE] = outcome
    return attributes


def decision_attributes(decision: Decision) -> Attributes:
    """The routing span's result: router, route, LLM-router fallback reason, latency and the
    candidates in order (not the scores: they are for `?explain=1`)."""
    attributes = routing_attributes(
        decision.router, decision.route, decision.router_fallback, decision.latency_ms
    )
    attributes["turnout.models"] = tuple(decision.models)
    if decision.confidence is not None:
        attributes["turnout.router.confidence"] = decision.confidence
    if decision.escalated:
        attributes["turnout.router.escalated"] = True
    return attributes


# ---------------------------------------------------------------------- configuration


def export_settings(
    tracing: TracingConfig | None, env: Mapping[str, str] = os.environ
) -> ExportSettings | None:
    """Where to export, or None for off. On when Plano's `tracing` block is present, or when
    OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT or OTEL_TRACES_EXPORTER=otlp is set. Plano's
    `opentracing_grpc_endpoint` wins (OTLP gRPC); else the variables, with the protocol from
    OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL (default http/protobuf, as the spec says); a block
    without an endpoint and no variables sends to the OTLP gRPC default, localhost:4317."""
    if _truthy(env.get("OTEL_SDK_DISABLED")):
        return None
    exporter_kind = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter_kind == "none":
        return None
    if exporter_kind not in ("", "otlp"):
        _log.warning("tracing: OTEL_TRACES_EXPORTER=%s is not supported; using otlp", exporter_kind)
    traces_endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    base_endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    raw_headers = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS") or ""
    )
    # lowercase: gRPC metadata keys must be, and HTTP header names are case-insensitive
    headers = {k.lower(): v for k, v in _parse_pairs(raw_headers).items()}
    plano_endpoint = (tracing.opentracing_grpc_endpoint or "").strip() if tracing else ""
    if plano_endpoint:
        if "://" not in plano_endpoint:
            # Plano requires http://; without a scheme the gRPC exporter would try TLS
            plano_endpoint = "http://" + plano_endpoint
        if traces_endpoint or base_endpoint:
            _log.warning(
                "tracing: opentracing_grpc_endpoint %s overrides OTEL_EXPORTER_OTLP_*ENDPOINT",
                plano_endpoint,
            )
        return ExportSettings("grpc", plano_endpoint, headers, "plano")
    if tracing is None and not (traces_endpoint or base_endpoint or exporter_kind == "otlp"):
        return None
    protocol = _protocol(
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    )
    if traces_endpoint:
        return ExportSettings(protocol, traces_endpoint, headers, "env")
    if base_endpoint:
        if protocol == "http/protobuf":
            base_endpoint = base_endpoint.rstrip("/") + "/v1/traces"
        return ExportSettings(protocol, base_endpoint, headers, "env")
    if tracing is not None:
        return ExportSettings("grpc", _DEFAULT_GRPC_ENDPOINT, headers, "default")
    default = _DEFAULT_GRPC_ENDPOINT if protocol == "grpc" else _DEFAULT_HTTP_ENDPOINT
    return ExportSettings(protocol, default, headers, "default")


def sampler_from(tracing: TracingConfig | None, env: Mapping[str, str] = os.environ) -> Sampler:
    """Plano's `random_sampling` (percent) as ParentBased(TraceIdRatioBased): requests without a
    `traceparent` are sampled at that rate, the others follow the client's sampled flag (so 0
    still traces a request whose client sampled it). Else OTEL_TRACES_SAMPLER(_ARG), else the
    OTel default, parentbased_always_on."""
    if tracing is not None and tracing.random_sampling is not None:
        return ParentBased(TraceIdRatioBased(tracing.random_sampling / 100))
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if not name:
        return ParentBased(ALWAYS_ON)
    ratio = _ratio(env.get("OTEL_TRACES_SAMPLER_ARG"))
    samplers: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(ratio),
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(TraceIdRatioBased(ratio)),
    }
    if name not in samplers:
        _log.warning("tracing: OTEL_TRACES_SAMPLER=%s is not supported; using the default", name)
        return ParentBased(ALWAYS_ON)
    return samplers[name]


def resource_from(env: Mapping[str, str] = os.environ) -> Resource:
    """service.name from OTEL_SERVICE_NAME, else OTEL_RESOURCE_ATTRIBUTES, else "turnout"; built
    from `env` alone (not Resource.create, which reads os.environ) so tests stay hermetic."""
    attributes: Attributes = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": _SDK_VERSION,
        SERVICE_VERSION: __version__,
    }
    attributes.update(_parse_pairs(env.get("OTEL_RESOURCE_ATTRIBUTES", "")))
    service = env.get("OTEL_SERVICE_NAME", "").strip()
    attributes[SERVICE_NAME] = service or str(attributes.get(SERVICE_NAME) or _DEFAULT_SERVICE)
    return Resource(attributes)


# ---------------------------------------------------------------------- internals


def _status(attributes: Mapping[str, AttrValue]) -> Status:
    """A span with an `error.type` failed (HTTP: a 5xx for a server, a 4xx too for a client)."""
    error = attributes.get(ERROR_TYPE)
    return _UNSET if error is None else Status(StatusCode.ERROR, str(error))


def _exception_event(error: BaseException, timestamp: int) -> Event:
    """An exception as the SDK records one on a span (`Span.record_exception`)."""
    cls = type(error)
    module = cls.__module__
    return Event(
        "exception",
        {
            "exception.type": f"{module}.{cls.__qualname__}"
            if module and module != "builtins"
            else cls.__qualname__,
            "exception.message": str(error),
            "exception.stacktrace": "".join(traceback.format_exception(error)),
        },
        timestamp,
    )


def _message_json(role: str, text: str) -> dict[str, object]:
    return {"role": role, "parts": [{"type": "text", "content": text}]}


def _protocol(value: str | None) -> OtlpProtocol:
    protocol = (value or "http/protobuf").strip().lower()
    if protocol == "grpc":
        return "grpc"
    if protocol != "http/protobuf":
        _log.warning("tracing: OTLP protocol %s is not supported; using http/protobuf", protocol)
    return "http/protobuf"


def _ratio(value: str | None) -> float:
    try:
        ratio = float(value) if value is not None else 1.0
    except ValueError:
        _log.warning("tracing: OTEL_TRACES_SAMPLER_ARG=%s is not a number; using 1.0", value)
        return 1.0
    return min(max(ratio, 0.0), 1.0)


def _parse_pairs(value: str) -> dict[str, str]:
    """`k1=v1,k2=v2` with percent-encoded values (OTEL_RESOURCE_ATTRIBUTES, *_HEADERS)."""
    pairs: dict[str, str] = {}
    for item in value.split(","):
        key, sep, val = item.partition("=")
        if sep and key.strip():
            pairs[unquote(key.strip())] = unquote(val.strip())
    return pairs


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"
