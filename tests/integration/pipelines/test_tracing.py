"""One trace from the input message's header, through the model replica, to the output headers.

The replica runs in Serve's local testing mode: the same deployment class, in this process, so
the InMemorySpanExporter sees the spans it records.
"""

from __future__ import annotations

import base64
import json

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from ray import serve

from pipelines.config import ModelSettings, PipelineConfig
from pipelines.local import build_moderator
from pipelines.samples import drawn_image
from pipelines.serving import ServeSignalSource, signal_deployment
from pipelines.steps import SourceMessage
from pipelines.telemetry import telemetry
from policies.loader import load_policy_dir

from .conftest import E2E_POLICY

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01".encode()


@pytest.fixture
def local_replica_context():
    """Serve's local testing mode leaves the replica context unset, and `@serve.batch` reads it
    when its queue starts (Ray 2.60); set the one a real replica would have."""
    from ray.serve._private.common import DeploymentID, ReplicaID
    from ray.serve._private.config import DeploymentConfig
    from ray.serve.context import _set_internal_replica_context

    _set_internal_replica_context(
        replica_id=ReplicaID("local", DeploymentID("vlm", "trace-test")),
        servable_object=None,
        _deployment_config=DeploymentConfig(max_ongoing_requests=128),
        rank=None,
        world_size=1,
    )


@pytest.fixture(scope="module")
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # the replica records on the global provider
    return exporter


def test_trace_runs_from_input_header_through_the_replica_to_output_headers(
    spans, local_replica_context, tmp_path
):
    (tmp_path / "e2e.yaml").write_text(E2E_POLICY.format(prefix="trace"))
    config = PipelineConfig(
        policy_dir=str(tmp_path), model=ModelSettings(name_or_path="tiny:smolvlm", device="cpu")
    )
    handle = serve.run(signal_deployment(config), name="trace-test", _local_testing_mode=True)
    moderator = build_moderator(
        config,
        load_policy_dir(tmp_path),
        ServeSignalSource(handle),
        telemetry(trace.get_tracer_provider()),
    )
    post = {
        "id": "traced",
        "text": "secret text",
        "images": [{"data": base64.b64encode(drawn_image(5)).decode()}],
    }
    message = SourceMessage(
        json.dumps(post).encode(), b"traced", "posts", 0, 7, (("traceparent", TRACEPARENT),)
    )

    outputs = moderator.moderate([message])

    assert outputs, "no output"
    for out in outputs:
        assert dict(out.headers)["traceparent"].startswith(f"00-{TRACE_ID}-".encode())
    finished = [
        s for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") == TRACE_ID
    ]
    by_name: dict[str, list] = {}
    for span in finished:
        by_name.setdefault(span.name, []).append(span)
    consume = by_name["consume"][0]
    assert format(consume.parent.span_id, "016x") == "00f067aa0ba902b7"
    replica_infer = [s for s in by_name["infer"] if (s.attributes or {}).get("post.id") == "traced"]
    assert replica_infer, "the replica recorded no infer span in this trace"
    assert replica_infer[0].parent.span_id == consume.context.span_id
    assert {"consume", "fetch-image", "infer", "policy"} <= set(by_name)
    for span in finished:
        assert "secret text" not in json.dumps(dict(span.attributes or {}), default=str)
