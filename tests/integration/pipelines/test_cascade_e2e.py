"""Two models on real Tansu and Ray: each its own Serve pool, the large one asked only when open."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.records import Verdict
from contracts.vlm import DEFAULT_MODEL, TaskKind, VlmTask
from demo.samples import drawn_image
from pipelines.model_settings import NamedModelSettings, ReplicaPoolSettings
from pipelines.signal_records import InferenceRequest
from pipelines.wiring import build_signal_source
from tests.integration.pipeline_run import post_messages, publish

QUESTION = "Is there a weapon in this image?"
IMAGES = 8  # post_messages cycles over this many drawn images
CASCADE = """\
id: e2e
version: 1
signals:
  questions:
    weapon: "{question}"
    weapon_large: {{ask: "{question}", model: large}}
rules:
  - id: clearly-a-weapon
    when: answers.weapon > {high}
    action: block
  - id: maybe-a-weapon
    when: answers.weapon > {low} && answers.weapon_large > 0.5
    action: block
"""


def thresholds(config) -> tuple[float, float]:
    """Between the small model's own answers: three images below, three above, two open."""
    source = build_signal_source(config)
    task = VlmTask(TaskKind.QUESTION, QUESTION)
    requests = [
        InferenceRequest(f"i{n}", (drawn_image(n),), frozenset({task})) for n in range(IMAGES)
    ]
    ordered = sorted(result.values[task] for result in source.compute(requests))
    return (ordered[2] + ordered[3]) / 2, (ordered[-4] + ordered[-3]) / 2


@pytest.mark.timeout(600)
def test_two_models_each_on_its_own_pool_and_the_large_one_only_where_open(
    e2e_config, start_pipeline
):
    from ray import serve

    config = e2e_config()
    low, high = thresholds(config)
    policy = CASCADE.format(question=QUESTION, low=repr(low), high=repr(high))
    (Path(config.policy_dir) / "e2e.yaml").write_text(policy)
    large = NamedModelSettings(
        name_or_path="tiny:llava",
        device="cpu",
        cost="large",
        pool=ReplicaPoolSettings(num_cpus=0.5),
    )
    config = config.model_copy(update={"models": {"large": large}})
    run, collector = start_pipeline(config)
    apps = serve.status().applications
    assert {name: apps[name].status for name in run.app_names.values()} == {
        run.app_names[DEFAULT_MODEL]: "RUNNING",
        f"{run.app_names[DEFAULT_MODEL]}-large": "RUNNING",
    }
    messages = post_messages(3 * IMAGES, topic=config.topics.inputs[0], images=IMAGES)
    publish(config, messages)
    outputs = collector.wait_for(len(messages))

    verdicts = [Verdict.model_validate(v[0]) for v in outputs.verdicts.values()]
    assert len(verdicts) == len(messages)
    asked_large = {v.post_id for v in verdicts if "large" in v.models}
    open_posts = {v.post_id for v in verdicts if low < v.signals.answers["weapon"] <= high}
    assert asked_large == open_posts and 0 < len(open_posts) < len(verdicts) / 2
    for verdict in verdicts:
        assert verdict.models["default"].name.endswith("tiny-smolvlm")
        if verdict.post_id in asked_large:
            assert verdict.models["large"].name.endswith("tiny-llava")
