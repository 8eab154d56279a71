"""One trace from the input message's header, through the model replica, to the output headers.

The replica runs in Serve's local testing mode: the same deployment class, in one process, so an
InMemorySpanExporter sees the spans it records. That mode leaves state on the deployment class,
so the run happens in a child process and reports its spans as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.integration.pipeline_run import E2E_POLICY

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"

TRACED_RUN = textwrap.dedent(
    """
    import base64, json, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from ray import serve
    from ray.serve._private.common import DeploymentID, ReplicaID
    from ray.serve._private.config import DeploymentConfig
    from ray.serve.context import _set_internal_replica_context

    from pipelines.config import ModelSettings, PipelineConfig
    from sinks.kafka_topics import kafka_batch
    from pipelines.local import build_moderator
    from demo.samples import drawn_image
    from pipelines.serving import ServeSignalSource, signal_deployment
    from pipelines.steps import SourceMessage
    from pipelines.telemetry import telemetry
    from policies.loader import load_policy_dir

    policy_dir, traceparent = sys.argv[1], sys.argv[2].encode()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # the replica records on the global provider
    # Local testing mode leaves the replica context unset, and `@serve.batch` reads it when its
    # queue starts (Ray 2.60): set the one a real replica has.
    _set_internal_replica_context(
        replica_id=ReplicaID("local", DeploymentID("vlm", "trace-test")), servable_object=None,
        _deployment_config=DeploymentConfig(max_ongoing_requests=128), rank=None, world_size=1)
    config = PipelineConfig(policy_dir=policy_dir,
                            model=ModelSettings(name_or_path="tiny:smolvlm", device="cpu"))
    handle = serve.run(signal_deployment(config), name="trace-test", _local_testing_mode=True)
    moderator = build_moderator(config, load_policy_dir(policy_dir), ServeSignalSource(handle),
                                telemetry(provider))
    post = {"id": "traced", "text": "secret text",
            "images": [{"data": base64.b64encode(drawn_image(5)).decode()}]}
    message = SourceMessage(json.dumps(post).encode(), b"traced", "posts", 0, 7,
                            (("traceparent", traceparent),))
    outputs = kafka_batch(moderator.moderate([message]), config.topics)
    spans = [{
        "name": s.name,
        "trace_id": format(s.context.trace_id, "032x"),
        "span_id": format(s.context.span_id, "016x"),
        "parent": format(s.parent.span_id, "016x") if s.parent else None,
        "attributes": dict(s.attributes or {}),
    } for s in exporter.get_finished_spans()]
    headers = [dict(o.headers)["traceparent"].decode() for o in outputs]
    print(json.dumps({"headers": headers, "spans": spans}, default=str))
    """
)


def test_trace_runs_from_input_header_through_the_replica_to_output_headers(tmp_path):
    (tmp_path / "e2e.yaml").write_text(E2E_POLICY.format(prefix="trace"))
    traceparent = f"00-{TRACE_ID}-{PARENT_SPAN}-01"
    done = subprocess.run(
        [sys.executable, "-c", TRACED_RUN, str(tmp_path), traceparent],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["headers"], "no output message"
    assert all(h.startswith(f"00-{TRACE_ID}-") for h in report["headers"])
    spans = [s for s in report["spans"] if s["trace_id"] == TRACE_ID]
    by_name: dict[str, list[dict]] = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)
    [consume] = by_name["consume"]
    assert consume["parent"] == PARENT_SPAN
    replica = [s for s in by_name["infer"] if s["attributes"].get("post.id") == "traced"]
    assert replica, "the replica recorded no infer span in this trace"
    assert replica[0]["parent"] == consume["span_id"]
    assert {"consume", "fetch-image", "infer", "policy"} <= set(by_name)
    assert "secret text" not in json.dumps([s["attributes"] for s in spans])
