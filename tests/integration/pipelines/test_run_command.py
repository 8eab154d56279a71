"""`vlmod run`: moderates from a YAML config, and on SIGTERM drains, commits and exits 0."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import ray
import yaml

from pipelines.kafka_io import BatchConsumer, create_topics
from pipelines.runner import output_topics, review_topics
from policies.loader import load_policy_dir

from .conftest import GROUP_TIMEOUTS, OutputCollector, post_messages, publish


def test_sigterm_drains_commits_and_exits_zero(e2e_config, ray_local, tmp_path):
    config = e2e_config(model="noop")
    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    env = {
        **os.environ,
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "RAY_AUTH_MODE": "disabled",
    }
    command = [
        shutil.which("vlmod") or "vlmod",
        "run",
        "--config",
        str(config_file),
        "--stats-every-s",
        "1",
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    policy_set = load_policy_dir(config.policy_dir)
    create_topics(config.kafka, output_topics(config, policy_set), partitions=2)
    collector = OutputCollector(config, sorted(review_topics(policy_set)))
    try:
        messages = post_messages(200, topic=config.topics.inputs[0])
        publish(config, messages)
        outputs = collector.wait_for(len(messages), timeout_s=180)
        assert len(outputs.verdicts) == len(messages), "the pipeline did not moderate everything"
        process.send_signal(signal.SIGTERM)
        log, _ = process.communicate(timeout=180)
    finally:
        collector.close()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, log[-3000:]
    assert "stopped cleanly" in log

    # Everything was committed: the group's next member finds nothing left to read.
    late = BatchConsumer(
        config.kafka, config.topics.inputs, config.consumer_group, **GROUP_TIMEOUTS
    )
    try:
        deadline = time.monotonic() + 10
        leftovers = []
        while time.monotonic() < deadline:
            batch = late.poll(timeout_ms=200)
            if batch:
                leftovers.extend(batch.records)
    finally:
        late.close(commit=False)
    assert leftovers == [], f"{len(leftovers)} messages were not committed before exit"
