"""`vlmod run`: moderates from a YAML config, and on SIGTERM drains, commits and exits 0."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time

import ray
import yaml

from kafka_io.clients import OutMessage, create_topics
from kafka_io.consumers import BatchConsumer
from pipelines.producer_registry import pipeline_registry
from pipelines.runner import output_topics, review_topics
from policies.loader import load_policy_dir
from tests.integration.pipeline_run import GROUP_TIMEOUTS, OutputCollector, post_messages, publish


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
    policy_set = load_policy_dir(config.policy_dir, registry=pipeline_registry(config))
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


def deep_post(post_id: str, depth: int) -> bytes:
    inner = b'{"a": ' * (depth - 1) + b"1" + b"}" * (depth - 1)
    return b'{"id": "' + post_id.encode() + b'", "meta": ' + inner + b"}"


HOSTILE = {
    "surrogate": b'{"id": "surrogate", "text": "replica \\ud800 rolex", "meta": {"m": "\\udfff"}}',
    "deep-300": deep_post("deep-300", 300),
    "deep-1000": deep_post("deep-1000", 1000),
}


class StatsReader:
    """Reads `vlmod run`'s progress lines in the background; keeps the latest counters."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.latest: dict[str, int] = {}
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines.append(line)
            found = re.findall(r"([a-z ]+?) (\d+)(?: ·|$)", line.strip())
            if line.startswith("consumed "):
                self.latest = {name.strip(): int(value) for name, value in found}


def test_hostile_posts_never_stall_a_partition_under_vlmod_run(e2e_config, ray_local, tmp_path):
    config = e2e_config(model="noop")
    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    topic = config.topics.inputs[0]
    good = post_messages(60, topic=topic)
    hostile = [OutMessage(topic, raw, key.encode()) for key, raw in HOSTILE.items()]
    messages = good[:20] + hostile[:1] + good[20:40] + hostile[1:] + good[40:]
    policy_set = load_policy_dir(config.policy_dir, registry=pipeline_registry(config))
    create_topics(config.kafka, output_topics(config, policy_set), partitions=2)
    process = start_vlmod_run(config_file)
    stats = StatsReader(process)
    collector = OutputCollector(config, sorted(review_topics(policy_set)))
    try:
        publish(config, messages)
        outputs = collector.wait_for(len(messages), timeout_s=60)
        deadline = time.monotonic() + 60
        while stats.latest.get("consumed", 0) < len(messages) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        collector.close()
        process.send_signal(signal.SIGTERM)
        process.wait(120)
    missing = {m.key.decode() for m in good} - set(outputs.verdicts)
    assert not missing, f"good posts without a verdict: {sorted(missing)[:5]}"
    [surrogate] = outputs.verdicts["surrogate"]
    assert [c["field"] for c in surrogate["input_changes"]] == ["text", "meta.m"]
    for key in ("deep-300", "deep-1000"):
        [letter] = outputs.dead_letters[key]
        assert letter["stage"] == "validate" and "32" in letter["error"], letter
    assert stats.latest.get("consumed") == len(messages), "every message read exactly once"
    assert stats.latest.get("failed batches") == 0, "".join(stats.lines[-20:])


def start_vlmod_run(config_file) -> subprocess.Popen:
    env = {
        **os.environ,
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "RAY_AUTH_MODE": "disabled",
    }
    command = [shutil.which("vlmod") or "vlmod", "run", "--config", str(config_file)]
    return subprocess.Popen(
        [*command, "--stats-every-s", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
