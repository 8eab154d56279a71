"""The post's record: built from its journey, JSON that reads back equal, on its first verdict."""

from __future__ import annotations

import json
import math

import pytest
from opentelemetry.context import Context

from contracts.history import PostRecord
from contracts.producers import request_key
from contracts.records import ModelRef, Post, ShadowVerdict, Verdict
from contracts.registry import default_registry
from contracts.vlm import About, TaskKind, VlmTask
from kafka_io.settings import KafkaSettings
from operators.cache import decode_embedding, encode_embedding
from operators.guards.llamaguard_signals import LlamaGuardRequest
from operators.guards.producers import GuardRequest
from operators.specialists.links import COUNTS, link_counts
from pipelines.config import PipelineConfig, RetrySettings
from pipelines.journey import Journey, SourceMessage
from pipelines.recording import Recorder, recordable
from pipelines.signal_source import NoopSignals
from pipelines.stages import ModelSources
from policies.loader import load_policy_dir
from policies.scope import PostScope
from tests.producers import ShoutSignals
from tests.unit.pipelines.test_steps import (
    PNG,
    POLICY,
    SHADOW,
    ScriptedSource,
    by_topic,
    message,
    moderator_for,
    produced,
)

LABEL = VlmTask(TaskKind.LABEL, "a weapon")
LARGE_QUESTION = VlmTask(TaskKind.QUESTION, "Is it a sale?", About.POST, "large")
EMBED = VlmTask(TaskKind.EMBED)
# One value of every producer the project registers, of the type its `compute` returns.
VALUES = {
    ("labels", LABEL): 0.9,
    ("questions", LARGE_QUESTION): 0.25,
    ("describe", VlmTask(TaskKind.DESCRIBE)): "a knife on a table",
    ("embed", EMBED): decode_embedding(encode_embedding([0.1, -2.5, 1e-8, 3.0])),
    ("links", COUNTS): link_counts("see https://bit.ly/x and http://www.example.com/y"),
    ("nsfw", "score"): 0.0312,
    ("ocr", "text"): "BUY NOW\nline two",
    ("profanity", "text"): 0.1,
    ("profanity", "ocr"): 0.9,
    ("banks", ("bank", "known-bad")): True,
    ("heads", "spam-wave"): 0.82,
    ("shieldgemma", GuardRequest("google/shieldgemma-2-4b-it", "dangerous")): 0.07,
    ("llamaguard", LlamaGuardRequest("meta-llama/Llama-Guard-4-12B", "unsafe", ("S1",))): 0.6,
}


@pytest.fixture
def policy_dir(tmp_path):
    (tmp_path / "test-policy.yaml").write_text(POLICY)
    return tmp_path


@pytest.fixture
def config(policy_dir):
    return PipelineConfig(
        kafka=KafkaSettings(bootstrap_servers="unused:9092"),
        policy_dir=str(policy_dir),
        retry=RetrySettings(max_attempts=3, backoff_base_s=0.0, backoff_cap_s=0.0),
    )


def models() -> ModelSources:
    return ModelSources(
        {
            "default": NoopSignals(ModelRef(name="org/small", revision="abc123")),
            "large": NoopSignals(ModelRef(name="/models/large", revision=None)),
        },
        {"default": 0, "large": 1},
    )


def journey(computed, unavailable=(), truncated=False) -> Journey:
    post = Post.model_validate(
        {"id": "p1", "text": "hello", "images": [{"url": "https://example.com/a.jpg"}], "x": 1}
    )
    trip = Journey(SourceMessage(b"{}"), Context(), post=post)
    trip.scope = PostScope(post, truncated=truncated)
    trip.computed = dict(computed)
    trip.unavailable = dict(unavailable)
    return trip


def test_every_registered_producer_is_covered_by_the_values_checked_here():
    names = {producer.name for producer in default_registry(("default", "large"))}
    assert names == {producer for producer, _ in VALUES}, "add the new producer's value above"


def test_the_record_holds_exactly_the_values_reasons_and_versions_of_the_journey():
    why = "hash banks unavailable: redis down"
    gone = ("banks", ("bank", "other"))
    trip = journey(VALUES, {gone: why}, truncated=True)
    record = Recorder(default_registry(("default", "large")), models()).record(trip)
    assert record.computed() == {(p, request_key(r)): v for (p, r), v in VALUES.items()}
    assert record.unavailable() == {("banks", "('bank', 'other')"): why}
    assert record.post == {
        "id": "p1",
        "text": "hello",
        "meta": {},
        "images": [{"url": "https://example.com/a.jpg", "mime": None}],
        "x": 1,
        "author": None,
        "created_at": None,
        "lang": None,
    }, "the fields policies read, `truncated` kept apart"
    assert record.truncated is True
    assert record.versions == {
        "labels": "replica default=org/small@abc123",
        "questions": "replica large=/models/large",
        "describe": "replica default=org/small@abc123",
        "embed": "replica default=org/small@abc123",
        "links": "1",
        "nsfw": "open_nsfw-onnx-1",
        "ocr": "rapidocr-ppocrv4-1",
        "profanity": "alt-profanity-check-1",
        "banks": "pdq-1",
        "heads": "heads-1",
        "shieldgemma": "shieldgemma2-1",
        "llamaguard": "llamaguard4-1",
    }


def test_a_record_reads_back_equal_from_json():
    record = Recorder(default_registry(("default", "large")), models()).record(journey(VALUES))
    again = PostRecord.model_validate_json(record.model_dump_json())
    assert again == record
    assert again.computed() == record.computed()


def test_a_tuple_value_is_recorded_as_the_list_json_gives_back():
    trip = journey({("shout", "parts"): (1, 2.5, ("a", True))})
    registry = default_registry()
    registry.register(ShoutSignals())
    record = Recorder(registry, models()).record(trip)
    [value] = record.values
    assert value.value == [1, 2.5, ["a", True]]
    assert PostRecord.model_validate_json(record.model_dump_json()) == record


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (math.nan, "nan"),
        ([0.5, math.inf], "inf"),
        ({1: 0.5}, "{1: 0.5}"),
        (object(), "object"),
        ({"a": {1, 2}}, "{1, 2}"),
    ],
)
def test_a_value_json_cannot_hold_exactly_fails_naming_its_producer(value, named):
    with pytest.raises(ValueError, match=r"record: labels VlmTask\(.*" + named[:3]):
        recordable(value, "labels", LABEL)


def test_a_value_from_an_unregistered_producer_fails():
    with pytest.raises(ValueError, match="'ghost' gave a value but is not registered"):
        Recorder(default_registry(), models()).record(journey({("ghost", "x"): 1.0}))


def test_an_embedding_is_kept_as_the_same_floats():
    floats = decode_embedding(encode_embedding([i / 7 for i in range(960)]))
    assert recordable(floats) == floats
    assert json.loads(json.dumps(recordable(floats))) == floats


def test_only_the_first_verdict_carries_the_record_and_it_holds_what_was_computed(
    config, policy_dir
):
    (policy_dir / "second.yaml").write_text(POLICY.replace("id: test-policy", "id: second"))
    moderator = moderator_for(config, ScriptedSource(weapon=0.9))
    outputs = by_topic(produced(moderator, [message({"id": "p1", "images": [{"data": PNG}]})]))
    first, second = (Verdict.model_validate_json(m.value) for m in outputs["moderation.verdicts"])
    assert second.record is None
    assert first.record is not None
    # The question no rule reads is never asked, so it is not recorded.
    asked = {("labels", request_key(VlmTask(TaskKind.LABEL, "a weapon"))): 0.9}
    assert first.record.computed() == asked
    assert first.record.post["id"] == "p1" and "data" not in first.record.post["images"][0]
    assert first.record.versions == {"labels": "replica default=scripted@1"}


def test_a_post_with_only_shadow_policies_has_its_record_on_the_first_shadow_verdict(
    config, policy_dir
):
    moderator = moderator_for(config, ScriptedSource(weapon=0.3))
    (policy_dir / "test-policy.yaml").write_text(SHADOW)
    (policy_dir / "other.yaml").write_text(SHADOW.replace("id: test-policy", "id: other"))
    shadows_only = load_policy_dir(policy_dir, require_active=False)  # as checking tools load
    moderator.policies = lambda: shadows_only
    outputs = by_topic(produced(moderator, [message({"id": "p2", "text": "buy followers"})]))
    assert "moderation.verdicts" not in outputs
    first, second = (
        ShadowVerdict.model_validate_json(m.value).verdict for m in outputs["moderation.shadow"]
    )
    assert first.record is not None and second.record is None
    assert first.record.post["text"] == "buy followers"
