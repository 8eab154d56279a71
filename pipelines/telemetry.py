"""OpenTelemetry spans and metrics of the pipeline. Post text and image bytes never go on spans."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.trace import NoOpTracer, ProxyTracer, Span, Tracer

from pipelines.config import TelemetrySettings

INSTRUMENTATION = "vlm-moderation"


@dataclass
class Telemetry:
    """The tracer and the metric instruments every stage records into."""

    tracer: Tracer
    meter: Meter
    lag_sources: list[Callable[[], int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.recording = records_spans(self.tracer)
        m = self.meter
        self.posts_in = m.create_counter("vlmod.posts.in", description="Messages consumed")
        self.posts_out = m.create_counter(
            "vlmod.posts.out", description="Verdicts produced, by action"
        )
        self.dead_letters = m.create_counter(
            "vlmod.dead_letters", description="Dead letters produced, by stage"
        )
        self.cache_hits = m.create_counter("vlmod.cache.hits", description="Answers from cache")
        self.cache_misses = m.create_counter("vlmod.cache.misses", description="Answers computed")
        self.batch_size = m.create_histogram("vlmod.batch.size", description="Posts per batch")
        self.latency = m.create_histogram(
            "vlmod.latency", unit="ms", description="Consume to produce-ack, per post"
        )
        m.create_observable_gauge(
            "vlmod.consumer.lag", callbacks=[self._observe_lag], description="Messages behind"
        )

    def _observe_lag(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(sum(source() for source in self.lag_sources))]

    def post_span(
        self, name: str, context: Context | None = None
    ) -> AbstractContextManager[Span | None]:
        """A span per post, or None where no tracer provider is installed (the default
        `telemetry.exporter: none`): a no-op span costs about 15 µs, and would carry on the
        very trace context the post came with."""
        if not self.recording:
            return _NO_SPAN
        return self.tracer.start_as_current_span(name, context=context)


_NO_SPAN: AbstractContextManager[None] = contextlib.nullcontext()


def records_spans(tracer: Tracer) -> bool:
    """False for a no-op tracer, or the global one while no provider is installed."""
    if isinstance(tracer, NoOpTracer):
        return False
    if isinstance(tracer, ProxyTracer):
        return not isinstance(
            trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider
        )
    return True


def telemetry(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Telemetry:
    """Instruments on the given providers (default: the global ones, no-ops until configured)."""
    tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(INSTRUMENTATION)
    meter = (meter_provider or metrics.get_meter_provider()).get_meter(INSTRUMENTATION)
    return Telemetry(tracer, meter)


_installed: list[TelemetrySettings] = []


def install_exporters(settings: TelemetrySettings) -> None:
    """Make this process export spans and metrics as configured (none: leave the no-ops).

    Each Ray process (driver, consumer actor, replica) calls it once; later calls do nothing.
    """
    if settings.exporter == "none" or _installed:
        return
    _installed.append(settings)
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create({"service.name": settings.service_name})
    tracer_provider = TracerProvider(resource=resource)
    span_exporter: Any
    metric_exporter: Any
    if settings.exporter == "console":
        span_exporter, metric_exporter = ConsoleSpanExporter(), ConsoleMetricExporter()
    else:
        span_exporter, metric_exporter = _otlp_exporters(settings)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(metric_exporter)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


def _otlp_exporters(settings: TelemetrySettings) -> tuple[Any, Any]:
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise ImportError(
            "telemetry.exporter=otlp needs `pip install opentelemetry-exporter-otlp-proto-http`"
        ) from exc
    endpoint = settings.otlp_endpoint
    span = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces" if endpoint else None)
    metric = OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics" if endpoint else None)
    return span, metric
