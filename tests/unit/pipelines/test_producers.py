"""Signal producers through the step list: one-line registration, cost stages, whole-post tasks."""

from __future__ import annotations

import base64
import json

import pytest

from contracts.errors import ConfigInvalid
from contracts.producers import Ask, Cost, Variable
from contracts.records import ModelRef
from contracts.vlm import About, TaskKind, empty_value
from demo.samples import drawn_image
from kafka_io.settings import KafkaSettings
from pipelines.config import PipelineConfig, RetrySettings
from pipelines.journey import SourceMessage
from pipelines.local import build_moderator
from pipelines.producer_registry import load_producer, producer_registry
from pipelines.signal_records import InferenceResult
from policies.loader import load_policy_dir
from tests.producers import ShoutSignals

PNG = base64.b64encode(drawn_image(3)).decode()


class RecordingModel:
    """A replica stand-in: P(yes) = 0.8 for every task; records what it was sent."""

    model = ModelRef(name="recording", revision=None)

    def __init__(self, text_tokens_cut: int = 0) -> None:
        self.requests: list = []
        self.text_tokens_cut = text_tokens_cut

    def compute(self, requests):
        self.requests += requests
        return [
            InferenceResult(
                r.post_id,
                {
                    t: 0.8 if t.kind in (TaskKind.LABEL, TaskKind.QUESTION) else empty_value(t)
                    for t in r.tasks
                },
                text_tokens_cut=self.text_tokens_cut,
            )
            for r in requests
        ]


POLICY = """
id: shouting
version: 1
signals:
  shout: true
  questions:
    minor: "Does the image show a child?"
    offsite_payment:
      ask: "Does this post ask the buyer to pay or talk outside the platform?"
      about: post
rules:
  - id: all-caps
    when: shout > 0.9
    action: escalate
    priority: 0
  - id: offsite
    when: answers.offsite_payment > 0.5
    action: review
  - id: minor
    when: answers.minor > 0.5
    action: block
"""


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "shouting.yaml").write_text(POLICY)
    config = PipelineConfig(
        kafka=KafkaSettings(bootstrap_servers="unused:9092"),
        policy_dir=str(tmp_path),
        retry=RetrySettings(max_attempts=1),
    )
    registry = producer_registry()
    shout = ShoutSignals()
    registry.register(shout)  # the one line that adds a producer
    policies = load_policy_dir(tmp_path, registry=registry)

    def moderate(body, model=None):
        model = model or RecordingModel()
        moderator = build_moderator(config, policies, model, registry=registry)
        raw = json.dumps(body).encode()
        [outcome] = moderator.moderate([SourceMessage(raw, b"k", "posts", 0, 0)])
        [active] = outcome.verdicts
        return active.verdict, model

    return moderate, shout


def test_a_registered_producer_computes_its_signal_and_a_rule_reads_it(setup):
    moderate, shout = setup
    verdict, model = moderate({"id": "loud", "text": "PAY ME NOW OR ELSE"})
    assert verdict.action == "escalate" and [r.id for r in verdict.matched_rules] == ["all-caps"]
    assert verdict.signals.model_extra == {"shout": 1.0}
    assert shout.seen == ["loud"]
    assert model.requests == [], "the cheap signal decided: the model is never called"


def test_a_text_only_post_goes_to_the_model_with_its_text_for_post_questions(setup):
    moderate, _ = setup
    verdict, model = moderate({"id": "calm", "text": "message me on whatsapp to pay"})
    [request] = model.requests
    assert request.images == () and request.text == "message me on whatsapp to pay"
    assert {(t.kind, t.about) for t in request.tasks} == {(TaskKind.QUESTION, About.POST)}
    assert verdict.signals.answers == {"offsite_payment": 0.8, "minor": 0.0}
    assert verdict.action == "review"


def test_a_post_with_images_gets_image_and_post_tasks_in_one_request(setup):
    moderate, _ = setup
    verdict, model = moderate({"id": "pic", "text": "nice", "images": [{"data": PNG}]})
    [request] = model.requests
    assert len(request.images) == 1
    assert {t.about for t in request.tasks} == {About.IMAGE, About.POST}
    assert verdict.action == "block"


def test_text_left_out_of_the_models_prompt_is_recorded_in_the_verdict(setup):
    moderate, _ = setup
    verdict, _ = moderate({"id": "long", "text": "calm words " * 500}, RecordingModel(300))
    [change] = verdict.input_changes
    assert (change.field, change.change) == ("text", "truncated")
    assert change.detail == "300 tokens left out of the model's prompt (model.max_text_tokens)"


def test_producers_from_config_are_imported_by_path():
    producer = load_producer("operators.specialists.links:LinkSignals")
    assert producer.name == "links"
    with pytest.raises(ConfigInvalid, match=r"cannot import 'nope\.module:X'"):
        load_producer("nope.module:X")
    with pytest.raises(ConfigInvalid, match="not of the form"):
        load_producer("just-a-name")


def test_a_second_producer_of_a_variable_is_refused():
    registry = producer_registry()
    registry.register(ShoutSignals())
    with pytest.raises(ValueError, match="'shout' is already registered"):
        registry.register(ShoutSignals())


class CountingSpecialist(ShoutSignals):
    """A specialist-cost producer (a small model, say): its values are worth caching."""

    name = "specialist"
    variables = (Variable("specialist", "double"),)
    cost = Cost.SPECIALIST

    def asks(self, value: bool) -> list[Ask]:
        return [Ask("specialist", None, "share")] if value else []


def test_specialist_values_are_cached_by_the_content_they_read(tmp_path):
    from operators.cache import SignalCache

    policy = (
        "id: s\nversion: 1\nsignals: {specialist: true}\n"
        "rules:\n  - {id: r, when: 'specialist > 0.5', action: review}\n"
    )
    (tmp_path / "s.yaml").write_text(policy)
    config = PipelineConfig(kafka=KafkaSettings(bootstrap_servers="unused:9092"))
    registry = producer_registry()
    specialist = CountingSpecialist()
    registry.register(specialist)
    policies = load_policy_dir(tmp_path, registry=registry)
    moderator = build_moderator(config, policies, RecordingModel(), registry=registry)
    moderator.gatherer.cache = SignalCache.in_memory()

    def verdict(post_id, text):
        raw = json.dumps({"id": post_id, "text": text}).encode()
        [outcome] = moderator.moderate([SourceMessage(raw, b"k", "posts", 0, 0)])
        return outcome.verdicts[0].verdict

    assert verdict("a", "LOUD").action == "review"
    assert verdict("b", "LOUD").action == "review", "a repost: same content, same value"
    assert verdict("c", "quiet").action == "allow"
    assert specialist.seen == ["a", "c"], "the repost was answered by the cache"
