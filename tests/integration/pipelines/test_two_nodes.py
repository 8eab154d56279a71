"""Across two Ray nodes: the model pool pinned to a second node by a custom resource, that node
lost mid-stream and brought back, and every post still ends as one verdict key."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import yaml

from demo.harness import wait_until
from kafka_io.clients import create_topics
from pipelines.config import PoolSettings, RetrySettings
from pipelines.producer_registry import pipeline_registry
from pipelines.runner import output_topics, review_topics
from policies.loader import load_policy_dir
from tests.integration.pipeline_run import (
    OutputCollector,
    check_every_post_has_one_verdict_key,
    post_messages,
    publish_in_background,
    wait_for_first_verdicts,
)
from tests.integration.ray_nodes import RayNode, node_env

MODEL_NODE = {"model_node": 1.0}


def replica_on(node: RayNode) -> bool:
    """True once a Serve replica process runs in `node`'s session."""
    return any("ServeReplica" in args for _, args in node.session_processes())


def start_vlmod_run(config_file: Path, head: RayNode, log: Path) -> subprocess.Popen:
    """`vlmod run` as the cluster's driver."""
    command = [shutil.which("vlmod") or "vlmod", "run", "--config", str(config_file)]
    env = {**node_env(), "RAY_ADDRESS": head.gcs_address}
    return subprocess.Popen(
        [*command, "--stats-every-s", "2"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def test_losing_the_model_node_mid_stream_loses_no_post(e2e_config, tmp_path):
    # A short path: Ray's unix sockets live under the head's temp dir.
    workdir = Path(tempfile.mkdtemp(prefix="vlmod-ray-"))
    nodes: list[RayNode] = []
    process = None
    collector = None
    try:
        head = RayNode(workdir, "head", num_cpus=1).start()
        nodes.append(head)
        first = RayNode(workdir, "model-node", head.gcs_address, 1, dict(MODEL_NODE)).start()
        nodes.append(first)
        pool = PoolSettings(
            num_cpus=0.5,
            consumer_num_cpus=0.25,
            max_batch_size=8,
            max_poll_records=8,
            resources=MODEL_NODE,
        )
        # Retries long enough to ride out a lost node: about a minute of backoff per post.
        retry = RetrySettings(max_attempts=40, backoff_base_s=0.2, backoff_cap_s=2.0)
        config = e2e_config(pool=pool, retry=retry)
        config_file = tmp_path / "pipeline.yaml"
        config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
        policy_set = load_policy_dir(config.policy_dir, registry=pipeline_registry(config))
        create_topics(config.kafka, output_topics(config, policy_set), partitions=2)
        collector = OutputCollector(config, sorted(review_topics(policy_set)))
        run_log = tmp_path / "vlmod-run.log"
        process = start_vlmod_run(config_file, head, run_log)
        wait_until(lambda: replica_on(first), what="a replica on the model node", timeout_s=180)
        assert not replica_on(head), "the model pool ran on the head, not where it was pinned"

        messages = post_messages(240, topic=config.topics.inputs[0])
        publisher = publish_in_background(config, messages, per_second=20)
        wait_for_first_verdicts(collector, count=30, timeout_s=180)
        first.kill()
        second = RayNode(workdir, "model-node-2", head.gcs_address, 1, dict(MODEL_NODE)).start()
        nodes.append(second)
        wait_until(lambda: replica_on(second), what="a replica on the new node", timeout_s=180)
        publisher.join()
        outputs = collector.wait_for(len(messages), timeout_s=300)
        check_every_post_has_one_verdict_key(outputs, [m.key.decode() for m in messages])
        assert not outputs.dead_letters, list(outputs.dead_letters.items())[:3]

        process.send_signal(signal.SIGTERM)
        assert process.wait(120) == 0, run_log.read_text()[-3000:]
        assert "stopped cleanly" in run_log.read_text()
    finally:
        if collector is not None:
            collector.close()
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(30)
        for node in reversed(nodes):
            node.kill()
        if os.path.isdir(workdir):
            shutil.rmtree(workdir, ignore_errors=True)
