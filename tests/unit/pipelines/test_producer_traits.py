"""A producer's traits are declared members with defaults; the pipeline acts on each of them."""

from __future__ import annotations

import json

from contracts.errors import ModerationError
from contracts.outcomes import Outcome
from contracts.producers import NO_EMPTY, ProducerContext, traits_of
from kafka_io.settings import KafkaSettings
from pipelines.config import PipelineConfig, RetrySettings
from pipelines.journey import SourceMessage
from pipelines.local import build_moderator
from pipelines.producer_registry import producer_registry
from policies.loader import load_policy_dir
from tests.producers import ShoutSignals
from tests.unit.pipelines.test_producers import RecordingModel


def test_a_producer_that_declares_no_traits_gets_the_defaults():
    traits = traits_of(ShoutSignals())  # written before the traits were declared
    assert (traits.adds_text, traits.cacheable, traits.retryable) == (False, True, ())
    assert traits.empty("share") is NO_EMPTY
    traits.bind(ProducerContext())  # nothing to bind: a no-op, not an AttributeError


def test_the_shipped_producers_declare_their_traits():
    registry = producer_registry()
    traits = {name: registry.traits(name) for name in ("ocr", "nsfw", "banks", "links")}
    assert [name for name, t in traits.items() if t.adds_text] == ["ocr"]
    assert [name for name, t in traits.items() if not t.cacheable] == ["banks"]
    assert traits["nsfw"].empty("score") == 0.0 and traits["ocr"].empty("text") == ""
    assert traits["links"].empty("counts") is NO_EMPTY


class QuotaSpent(ModerationError):
    """An error raised on purpose: the pipeline alone would not retry it."""


class Flaky(ShoutSignals):
    """Fails its first `failures` calls with QuotaSpent, then answers."""

    def __init__(self, failures: int, retryable: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.failures, self.calls, self.retryable = failures, 0, retryable

    def compute(self, jobs):
        self.calls += 1
        if self.calls <= self.failures:
            return [QuotaSpent("the quota is spent for this second")] * len(jobs)
        return super().compute(jobs)


def _outcome(tmp_path, producer) -> Outcome:
    (tmp_path / "shout.yaml").write_text(
        "id: s\nversion: 1\nsignals: {shout: true}\n"
        "rules:\n  - {id: r, when: 'shout > 0.5', action: review}\n"
    )
    config = PipelineConfig(
        kafka=KafkaSettings(bootstrap_servers="unused:9092"), retry=RetrySettings(max_attempts=3)
    )
    registry = producer_registry()
    registry.register(producer)
    policies = load_policy_dir(tmp_path, registry=registry)
    moderator = build_moderator(config, policies, RecordingModel(), registry=registry)
    moderator.gatherer.sleep = lambda seconds: None
    raw = json.dumps({"id": "p", "text": "LOUD"}).encode()
    [out] = moderator.moderate([SourceMessage(raw, b"k", "posts", 0, 0)])
    return out


def test_an_error_the_producer_declares_retryable_is_tried_again(tmp_path):
    flaky = Flaky(failures=2, retryable=(QuotaSpent,))
    out = _outcome(tmp_path, flaky)
    assert out.dead_letter is None and out.most_severe().action == "review"
    assert flaky.calls == 3


def test_the_same_error_undeclared_dead_letters_the_post_at_once(tmp_path):
    flaky = Flaky(failures=2, retryable=())
    out = _outcome(tmp_path, flaky)
    assert out.verdicts == () and "QuotaSpent" in out.dead_letter.model_dump_json()
    assert flaky.calls == 1
