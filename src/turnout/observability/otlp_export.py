"""The OTLP exporters (gRPC and HTTP/protobuf) of opentelemetry-exporter-otlp, with turnout's
encoder (otlp_encoding.py) in place of theirs: the exporters keep what they are good at
(endpoints, headers, TLS, compression, timeouts, retries with backoff, the OTEL_* variables),
and the encoding, which they do in the gateway's process for every sampled request, costs a
fifth. Imported only when tracing is on, so a gateway without it never loads grpc or requests.

Both subclasses reach one step below the exporters' public surface (the HTTP exporter's client,
the gRPC exporter's `_translate_data`); the OTLP export tests, with real receivers, fail if a
new release moves them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcOTLPSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpOTLPSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from turnout.observability.otlp_encoding import encode_spans

if TYPE_CHECKING:
    from turnout.observability.tracing import ExportSettings


class HttpSpanExporter(HttpOTLPSpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        sent = self._client.export(encode_spans(spans))
        return SpanExportResult.SUCCESS if sent.success else SpanExportResult.FAILURE


class GrpcSpanExporter(GrpcOTLPSpanExporter):
    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        """The gRPC stub wants a message: parsing turnout's bytes into one costs ~1 µs a request
        (protobuf's C parser), building it span by span ~110."""
        return ExportTraceServiceRequest.FromString(encode_spans(data))


def exporter(settings: ExportSettings) -> SpanExporter:
    headers = settings.headers or None
    if settings.protocol == "grpc":
        return GrpcSpanExporter(endpoint=settings.endpoint, headers=headers)
    return HttpSpanExporter(endpoint=settings.endpoint, headers=headers)
