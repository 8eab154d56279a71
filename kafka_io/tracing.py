"""W3C trace context carried in Kafka message headers (`traceparent`, `tracestate`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

Headers = list[tuple[str, bytes]]

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = frozenset(_PROPAGATOR.fields)


def context_from_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> Context:
    """The trace context a producer put in the headers; an empty context when there is none."""
    carrier = {
        name.lower(): value.decode("latin-1")
        for name, value in headers or ()
        if value is not None and name.lower() in _TRACE_HEADERS
    }
    return _PROPAGATOR.extract(carrier)


def headers_with_trace(
    headers: Sequence[tuple[str, bytes]] = (), context: Context | None = None
) -> Headers:
    """`headers` without old trace fields, plus those of `context` (default: the current span)."""
    kept = [(name, value) for name, value in headers if name.lower() not in _TRACE_HEADERS]
    return kept + trace_headers(trace_fields(context))


def trace_fields(context: Context | None = None) -> dict[str, str]:
    """The W3C trace fields (traceparent, tracestate) of `context` (default: the current span)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    return carrier


def trace_headers(fields: Mapping[str, str]) -> Headers:
    """Trace fields as message headers."""
    return [(name, value.encode("latin-1")) for name, value in fields.items()]


def trace_id_of(context: Context | None = None) -> str | None:
    """The 32-hex-digit trace id of the span in `context` (default: current), None if invalid."""
    span_context = trace.get_current_span(context).get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None
