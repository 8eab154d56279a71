"""Two real (tiny, random-weight) models in one local pipeline: the small one decides most posts.

The small model is tiny SmolVLM, the large one tiny LLaVA, each loaded and self-checked on its
own. The policy's thresholds are set between the small model's own answers, so it decides the
posts at either end and leaves the middle ones open; a wrapper around the large model's real
source counts the posts it is sent, and a hook on its network counts its forwards.
"""

from __future__ import annotations

import base64
import json

import pytest

from contracts.vlm import TaskKind, VlmTask
from demo.samples import drawn_image
from kafka_io.settings import KafkaSettings
from pipelines.config import ModelSettings, PipelineConfig
from pipelines.local import build_moderator
from pipelines.model_settings import NamedModelSettings
from pipelines.producer_registry import pipeline_registry
from pipelines.signal_records import InferenceRequest
from pipelines.steps import SourceMessage
from pipelines.wiring import build_model_sources
from policies.loader import load_policy_dir

QUESTION = "Is there a weapon in this image?"
POSTS = 9
POLICY = """\
id: cascade
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
    action: review
    queue: weapons
"""


class CountingSource:
    """A model's real signal source that counts the posts sent to it."""

    def __init__(self, source):
        self.source, self.posts = source, []

    @property
    def model(self):
        return self.source.model

    def compute(self, requests):
        self.posts += [request.post_id for request in requests]
        return self.source.compute(requests)


@pytest.fixture(scope="module")
def config():
    return PipelineConfig(
        kafka=KafkaSettings(bootstrap_servers="unused:9092"),
        model=ModelSettings(name_or_path="tiny:smolvlm", device="cpu", cost="small"),
        models={"large": NamedModelSettings(name_or_path="tiny:llava", device="cpu", cost="large")},
    )


@pytest.fixture(scope="module")
def sources(config):
    return build_model_sources(config)


def images():
    return [drawn_image(seed) for seed in range(POSTS)]


def small_answers(source) -> list[float]:
    """What the small model says to the question about each post's image, asked directly."""
    task = VlmTask(TaskKind.QUESTION, QUESTION)
    requests = [
        InferenceRequest(f"p{n}", (image,), frozenset({task})) for n, image in enumerate(images())
    ]
    return [result.values[task] for result in source.compute(requests)]


def cascade_policy(tmp_path, answers: list[float]):
    """Thresholds between the small model's answers: three low, three high, the rest open."""
    ordered = sorted(answers)
    low, high = (ordered[2] + ordered[3]) / 2, (ordered[-4] + ordered[-3]) / 2
    assert ordered[2] < ordered[3] and ordered[-4] < ordered[-3], f"answers tie: {ordered}"
    text = POLICY.format(question=QUESTION, low=repr(low), high=repr(high))
    (tmp_path / "cascade.yaml").write_text(text)
    return low, high


def messages():
    return [
        SourceMessage(
            json.dumps(
                {"id": f"p{n}", "images": [{"data": base64.b64encode(image).decode()}]}
            ).encode()
        )
        for n, image in enumerate(images())
    ]


def test_the_large_model_runs_only_for_posts_the_small_one_left_open(tmp_path, config, sources):
    low, high = cascade_policy(tmp_path, small_answers(sources["default"]))
    config = config.model_copy(update={"policy_dir": str(tmp_path)})
    large = CountingSource(sources["large"])
    forwards = []
    network = sources["large"].operator.vlm.model
    hook = network.register_forward_hook(lambda *_: forwards.append(1))
    try:
        policies = load_policy_dir(tmp_path, registry=pipeline_registry(config))
        moderator = build_moderator(
            config, policies, {"default": sources["default"], "large": large}
        )
        outputs = moderator.moderate(messages())
    finally:
        hook.remove()
    verdicts = {a.verdict.post_id: a.verdict for o in outputs for a in o.verdicts}
    assert len(verdicts) == POSTS
    small = {post: v.signals.answers["weapon"] for post, v in verdicts.items()}
    undecided = sorted(post for post, answer in small.items() if low < answer <= high)
    assert 0 < len(undecided) < POSTS / 2, f"the small model decides most posts: {small}"
    assert sorted(large.posts) == undecided, "the large model saw exactly the undecided posts"
    assert forwards, "and it really ran for them"
    for post, verdict in verdicts.items():
        asked = ["default", "large"] if post in undecided else ["default"]
        assert list(verdict.models) == asked
        assert ("weapon_large" in verdict.signals.answers) == (post in undecided)
        if small[post] > high:
            assert verdict.action == "block"
    assert verdicts[undecided[0]].models["large"].name.endswith("tiny-llava")
    assert verdicts[undecided[0]].model.name.endswith("tiny-smolvlm")


def test_one_answer_cache_shared_by_both_models_keeps_their_answers_apart(sources):
    from operators.cache import SignalCache

    cache = SignalCache.in_memory()
    task = VlmTask(TaskKind.QUESTION, QUESTION)
    request = InferenceRequest("p", (drawn_image(0),), frozenset({task}))
    operators = [sources[name].operator for name in ("default", "large")]
    try:
        for operator in operators:
            operator.cache = cache
        small, large, again = (
            sources[name].compute([request])[0] for name in ("default", "large", "default")
        )
    finally:
        for operator in operators:
            operator.cache = None
    assert (small.cache_hits, large.cache_hits, again.cache_hits) == (0, 0, 1)
    assert large.values[task] != small.values[task] == again.values[task]
