"""What producers give besides values: evidence, unavailable values, needs, text found in a post."""

from __future__ import annotations

import base64
import json

from contracts.producers import (
    Ask,
    Cost,
    Input,
    ProducerOutput,
    Unavailable,
    Variable,
)
from contracts.vlm import About
from demo.samples import drawn_image
from kafka_io.settings import KafkaSettings
from operators.cache import SignalCache
from pipelines.config import PipelineConfig, RetrySettings
from pipelines.journey import SourceMessage
from pipelines.local import build_moderator
from pipelines.producer_registry import producer_registry
from policies.loader import load_policy_dir
from tests.producers import ShoutSignals
from tests.unit.pipelines.test_producers import RecordingModel

PNG = base64.b64encode(drawn_image(5)).decode()


class ReadsImages(ShoutSignals):
    """Text found in the images (an OCR stand-in): always "CALL ME", with box evidence."""

    name = "found"
    variables = (Variable("found", "string"),)
    inputs = frozenset({Input.IMAGES})
    cost = Cost.SPECIALIST
    adds_text = True

    def asks(self, value: bool) -> list[Ask]:
        return [Ask("found", None, "text")] if value else []

    def compute(self, jobs):
        self.seen += [job.post.id for job in jobs]
        evidence = {"boxes": [{"text": "CALL ME", "confidence": 0.93}]}
        return [
            ProducerOutput({"text": "CALL ME"}, evidence, ("image 0 downscaled",)) for _ in jobs
        ]


class ScoresFound(ShoutSignals):
    """Reads another producer's value: the share of capitals in the found text."""

    name = "found_shout"
    variables = (Variable("found_shout", "double"),)
    inputs = frozenset({Input.SIGNALS})
    cost = Cost.SPECIALIST
    after = ("found",)

    def asks(self, value: bool) -> list[Ask]:
        return [Ask("found_shout", None, "share", needs=(("found", "text"),))] if value else []

    def compute(self, jobs):
        self.seen += [job.post.id for job in jobs]
        texts = [job.signals.get("found", {}).get("text") for job in jobs]
        return [{"share": 1.0 if text and text.isupper() else 0.0} for text in texts]


class FlakyStore(ShoutSignals):
    """A lookup in a store that is down: its values are unavailable, never an exception."""

    name = "store"
    variables = (Variable("store", "map(string, bool)", keyed=True, item="entry"),)
    cost = Cost.SPECIALIST
    cacheable = False
    config = list[str]

    def asks(self, value: list[str]) -> list[Ask]:
        return [Ask("store", name, ("entry", name)) for name in value]

    def compute(self, jobs):
        self.seen += [job.post.id for job in jobs]
        return [
            {r: Unavailable("Redis at redis://x:6379 refused") for r in job.requests}
            for job in jobs
        ]


def _moderator(tmp_path, policy, *producers, cache=None):
    (tmp_path / "p.yaml").write_text(policy)
    config = PipelineConfig(
        kafka=KafkaSettings(bootstrap_servers="unused:9092"), retry=RetrySettings(max_attempts=1)
    )
    registry = producer_registry()
    for producer in producers:
        registry.register(producer)
    policies = load_policy_dir(tmp_path, registry=registry)
    model = RecordingModel()
    moderator = build_moderator(config, policies, model, registry=registry)
    moderator.gatherer.cache = cache

    def verdict(body):
        raw = json.dumps(body).encode()
        [outcome] = moderator.moderate([SourceMessage(raw, b"k", "posts", 0, 0)])
        [active] = outcome.verdicts
        return active.verdict

    return verdict, model


def test_the_verdict_lists_each_producer_with_its_time_evidence_and_notes(tmp_path):
    policy = """
id: p
version: 1
signals: {found: true}
rules:
  - {id: call, when: 'found.contains("CALL")', action: review}
"""
    verdict, _ = _moderator(tmp_path, policy, ReadsImages(), cache=SignalCache.in_memory())
    first = verdict({"id": "a", "images": [{"data": PNG}]})
    [run] = first.producers
    assert (run.name, run.cached, run.unavailable) == ("found", False, None)
    assert run.ms >= 0 and run.notes == ["image 0 downscaled"]
    assert run.evidence == {"boxes": [{"text": "CALL ME", "confidence": 0.93}]}
    assert first.action == "review"
    repost = verdict({"id": "b", "images": [{"data": PNG}]})
    [cached] = repost.producers
    assert cached.cached and cached.evidence == run.evidence, "a cache hit keeps its evidence"


def test_an_unavailable_value_is_a_rule_error_naming_why_and_the_rest_still_decides(tmp_path):
    policy = """
id: p
version: 1
signals: {store: [known-bad]}
rules:
  - {id: banked, when: 'store["known-bad"]', action: block}
  - {id: words, when: 'text.contains("scam")', action: review}
"""
    flaky = FlakyStore()
    cache = SignalCache.in_memory()
    verdict, _ = _moderator(tmp_path, policy, flaky, cache=cache)
    result = verdict({"id": "a", "text": "a scam"})
    assert result.action == "review" and [r.id for r in result.matched_rules] == ["words"]
    [error] = result.rule_errors
    assert error.id == "banked"
    assert error.error == "signal unavailable: store.known-bad (Redis at redis://x:6379 refused)"
    [run] = result.producers
    assert run.unavailable == "Redis at redis://x:6379 refused"
    verdict({"id": "b", "text": "a scam"})
    assert flaky.seen == ["a", "b"], "a producer that is not cacheable is asked every time"


def test_a_value_computed_from_another_producers_brings_that_one_into_the_plan(tmp_path):
    policy = """
id: p
version: 1
signals: {found_shout: true}
rules:
  - {id: loud-image, when: 'found_shout > 0.5', action: review}
"""
    found, scores = ReadsImages(), ScoresFound()
    verdict, _ = _moderator(tmp_path, policy, found, scores)
    result = verdict({"id": "a", "images": [{"data": PNG}]})
    assert found.seen == ["a"] and scores.seen == ["a"], "the policy never named `found`"
    assert result.action == "review"
    assert [run.name for run in result.producers] == ["found", "found_shout"]


def test_questions_about_the_whole_post_read_the_text_found_in_its_images(tmp_path):
    policy = """
id: p
version: 1
signals:
  found: true
  questions:
    offsite: {ask: "Does this post ask to pay outside the platform?", about: post}
rules:
  - {id: offsite, when: 'answers.offsite > 0.5', action: review}
"""
    found = ReadsImages()
    verdict, model = _moderator(tmp_path, policy, found)
    result = verdict({"id": "a", "text": "see photo", "images": [{"data": PNG}]})
    [request] = model.requests
    assert found.seen == ["a"], "no rule reads `found`, yet post questions need it first"
    assert request.text == "see photo\n\nText found in the images:\nCALL ME"
    assert {t.about for t in request.tasks} == {About.POST}
    assert result.action == "review"
    assert [run.name for run in result.producers] == ["found", "questions"]


class KnownImages(FlakyStore):
    """A bank lookup that always matches (the store is up)."""

    name = "known"
    variables = (Variable("known", "map(string, bool)", keyed=True, item="entry"),)

    def asks(self, value: list[str]) -> list[Ask]:
        return [Ask("known", name, ("entry", name)) for name in value]

    def compute(self, jobs):
        self.seen += [job.post.id for job in jobs]
        return [{r: True for r in job.requests} for job in jobs]


def test_a_specialist_that_settles_the_verdict_skips_the_model(tmp_path):
    policy = """
id: p
version: 1
signals:
  known: [bad]
  labels: {weapon: "a weapon"}
  questions: {minor: "Does the image show a child?"}
rules:
  - {id: banked, when: 'known["bad"]', action: block, priority: 0}
  - {id: weapon, when: 'labels.weapon > 0.5', action: block, priority: 10}
  - {id: minor, when: 'answers.minor > 0.5', action: review}
"""
    known = KnownImages()
    verdict, model = _moderator(tmp_path, policy, known)
    result = verdict({"id": "a", "text": "hi", "images": [{"data": PNG}]})
    assert result.action == "block" and result.matched_rules[0].id == "banked"
    assert model.requests == [], "nothing the model could say outranks the bank match"
    assert [run.name for run in result.producers] == ["known"]
