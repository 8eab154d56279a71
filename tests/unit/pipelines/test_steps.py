"""The step list on a scripted signal source: routing, dead letters, retries, trace headers."""

from __future__ import annotations

import base64
import json

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts.errors import Stage
from contracts.records import DeadLetter, ModelRef, ShadowVerdict, Verdict
from contracts.review import ReviewTask
from contracts.vlm import TaskKind, empty_value
from demo.samples import drawn_image
from kafka_io.settings import KafkaSettings
from pipelines.config import PipelineConfig, RetrySettings
from pipelines.local import build_moderator
from pipelines.signal_records import Failure, InferenceResult
from pipelines.steps import SourceMessage
from pipelines.telemetry import telemetry
from policies.loader import load_policy_dir
from sinks.kafka_topics import kafka_batch

POLICY = """
id: test-policy
version: 2
signals:
  labels:
    weapon: "a weapon"
  questions:
    minor: "Is there a child?"
queues:
  weapons: review.weapons
rules:
  - id: threat
    when: text.matches("(?i)i will hurt")
    action: escalate
    queue: threats
    priority: 0
  - id: spam
    when: text.matches("(?i)buy followers")
    action: review
    queue: spam
  - id: weapon
    when: labels.weapon > 0.5
    action: block
    queue: weapons
default: allow
"""
SHADOW = POLICY.replace("version: 2", "version: 3\nmode: shadow").replace("> 0.5", "> 0.1")
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
PNG = base64.b64encode(drawn_image(1)).decode()


class ScriptedSource:
    """Answers label tasks with a fixed value, others 0.0; fails the first `failures` calls."""

    model = ModelRef(name="scripted", revision="1")

    def __init__(self, weapon=0.9, failures=0, retryable=True):
        self.weapon, self.failures, self.retryable = weapon, failures, retryable
        self.calls: list[str] = []
        self.requests: list = []

    def compute(self, requests):
        results = []
        for request in requests:
            self.calls.append(request.post_id)
            self.requests.append(request)
            if self.calls.count(request.post_id) <= self.failures:
                failure = Failure(Stage.INFER, "InferenceError", "replica lost", self.retryable)
                results.append(InferenceResult(request.post_id, failure=failure))
                continue
            values = {
                task: self.weapon if task.kind is TaskKind.LABEL else empty_value(task)
                for task in request.tasks
            }
            results.append(InferenceResult(request.post_id, values))
        return results


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


def moderator_for(config, source, spans=None):
    provider = TracerProvider()
    if spans is not None:
        provider.add_span_processor(SimpleSpanProcessor(spans))
    return build_moderator(
        config, load_policy_dir(config.policy_dir), source, telemetry(tracer_provider=provider)
    )


def message(body, *, offset=0, headers=()):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return SourceMessage(raw, b"k", "posts", 0, offset, tuple(headers))


def produced(moderator, messages):
    """The Kafka messages the consumer loop's sink sends for the outcomes of `messages`."""
    return kafka_batch(moderator.moderate(messages), moderator.topics)


def by_topic(outputs):
    topics: dict[str, list] = {}
    for out in outputs:
        topics.setdefault(out.topic, []).append(out)
    return topics


def test_image_post_gets_a_verdict_and_a_review_copy(config):
    moderator = moderator_for(config, ScriptedSource(weapon=0.9))
    outputs = by_topic(produced(moderator, [message({"id": "p1", "images": [{"data": PNG}]})]))
    assert set(outputs) == {"moderation.verdicts", "review.weapons"}
    verdict = Verdict.model_validate_json(outputs["moderation.verdicts"][0].value)
    assert (verdict.action, verdict.queue, verdict.post_id) == ("block", "weapons", "p1")
    assert verdict.signals.labels == {"weapon": 0.9}
    assert verdict.model == ModelRef(name="scripted", revision="1")
    task = ReviewTask.model_validate_json(outputs["review.weapons"][0].value)
    verdict = Verdict.model_validate_json(outputs["moderation.verdicts"][0].value)
    assert verdict.record is not None, "the post's record rides on its verdict"
    unrecorded = verdict.model_copy(update={"record": None})
    assert task.verdict == unrecorded, "the review copy leaves the record to the verdict topic"
    assert task.key == verdict.key and task.queue == "weapons"
    assert task.post.id == verdict.post_id and len(task.post.images) == 1, "what there is to judge"
    assert task.priority == verdict.priority
    assert outputs["moderation.verdicts"][0].key == b"p1"


def test_moderate_returns_one_outcome_per_message_in_order(config):
    moderator = moderator_for(config, ScriptedSource(weapon=0.9))
    batch = [
        message({"id": "a", "images": [{"data": PNG}]}, offset=7),
        message(b"garbage", offset=8),
        message({"id": "b", "text": "hello"}, offset=9),
    ]
    image, garbage, text = moderator.moderate(batch)
    assert [o.source.offset for o in (image, garbage, text)] == [7, 8, 9]
    assert (image.source.topic, image.source.partition, image.source.key) == ("posts", 0, b"k")
    [active] = image.verdicts
    assert (active.verdict.post_id, active.verdict.action) == ("a", "block")
    assert active.review is not None and active.review.topic == "review.weapons"
    assert active.review.task.verdict == active.verdict.model_copy(update={"record": None})
    assert image.dead_letter is None and image.shadows == ()
    assert garbage.verdicts == () and garbage.dead_letter is not None
    assert (garbage.post_id, garbage.dead_letter.stage) == (None, Stage.DECODE)
    assert text.most_severe() == text.verdicts[0].verdict
    assert [active.review for active in text.verdicts] == [None]


def test_text_decision_that_no_signal_can_change_skips_the_model(config):
    source = ScriptedSource(weapon=0.9)
    moderator = moderator_for(config, source)
    threat = {"id": "p2", "text": "I will hurt you", "images": [{"data": PNG}]}
    outputs = by_topic(produced(moderator, [message(threat)]))
    verdict = Verdict.model_validate_json(outputs["moderation.verdicts"][0].value)
    assert (verdict.action, verdict.queue) == ("escalate", "threats")
    assert source.calls == [], "escalate at priority 0 fired on text: no label can change it"
    spam = {"id": "p3", "text": "buy followers", "images": [{"data": PNG}]}
    produced(moderator, [message(spam)])
    assert source.calls == ["p3"], "review on text can still lose to block on the image"


def test_post_without_images_never_reaches_the_model(config):
    source = ScriptedSource()
    moderator = moderator_for(config, source)
    outputs = by_topic(produced(moderator, [message({"id": "t", "text": "hi"})]))
    verdict = Verdict.model_validate_json(outputs["moderation.verdicts"][0].value)
    assert source.calls == [] and verdict.action == "allow"
    assert verdict.signals.labels == {"weapon": 0.0}


@pytest.mark.parametrize(
    ("raw", "stage", "reason"),
    [
        (b"{oops", Stage.DECODE, "not JSON"),
        (b'{"text": "no id"}', Stage.VALIDATE, "id: Field required"),
        (b'{"id": "x", "images": "a.png"}', Stage.VALIDATE, "images: Input should be a valid list"),
    ],
)
def test_malformed_messages_become_dead_letters_with_the_original_bytes(config, raw, stage, reason):
    moderator = moderator_for(config, ScriptedSource())
    [out] = produced(moderator, [message(raw, offset=41)])
    letter = DeadLetter.model_validate_json(out.value)
    assert out.topic == "moderation.dead-letter"
    assert (letter.stage, letter.offset, letter.topic) == (stage, 41, "posts")
    assert letter.error.startswith(reason)
    assert base64.b64decode(letter.original) == raw


def test_unreadable_image_is_dead_lettered_at_fetch_image(config):
    moderator = moderator_for(config, ScriptedSource())
    [out] = produced(moderator, [message({"id": "p4", "images": [{"url": "file:///etc/passwd"}]})])
    letter = DeadLetter.model_validate_json(out.value)
    assert (letter.stage, letter.error_type, letter.post_id) == (
        Stage.FETCH_IMAGE,
        "FileOutsideRoot",
        "p4",
    )


def test_transient_inference_failures_are_retried_then_succeed(config):
    source = ScriptedSource(failures=2)
    moderator = moderator_for(config, source)
    outputs = by_topic(produced(moderator, [message({"id": "p5", "images": [{"data": PNG}]})]))
    assert source.calls == ["p5", "p5", "p5"]
    assert "moderation.verdicts" in outputs


def test_inference_that_keeps_failing_is_dead_lettered_after_max_attempts(config):
    source = ScriptedSource(failures=10)
    moderator = moderator_for(config, source)
    [out] = produced(moderator, [message({"id": "p6", "images": [{"data": PNG}]})])
    letter = DeadLetter.model_validate_json(out.value)
    assert (letter.stage, letter.attempts, letter.error) == (Stage.INFER, 3, "replica lost")
    assert len(source.calls) == 3


def test_permanent_failures_are_not_retried(config):
    source = ScriptedSource(failures=10, retryable=False)
    moderator = moderator_for(config, source)
    [out] = produced(moderator, [message({"id": "p7", "images": [{"data": PNG}]})])
    assert DeadLetter.model_validate_json(out.value).attempts == 1
    assert source.calls == ["p7"]


def test_one_bad_post_does_not_affect_the_rest_of_the_batch(config):
    moderator = moderator_for(config, ScriptedSource())
    outputs = produced(
        moderator,
        [
            message({"id": "a", "images": [{"data": PNG}]}, offset=0),
            message(b"garbage", offset=1),
            message({"id": "b", "text": "hello"}, offset=2),
        ],
    )
    topics = by_topic(outputs)
    verdict_ids = [
        Verdict.model_validate_json(o.value).post_id for o in topics["moderation.verdicts"]
    ]
    assert verdict_ids == ["a", "b"]
    assert len(topics["moderation.dead-letter"]) == 1


def test_a_retried_post_gets_the_same_verdict_key(config):
    moderator = moderator_for(config, ScriptedSource())
    body = {"id": "p8", "images": [{"data": PNG}]}
    first = Verdict.model_validate_json(produced(moderator, [message(body)])[0].value)
    again = Verdict.model_validate_json(produced(moderator, [message(body)])[0].value)
    assert first.key == again.key and first.processed_at != again.processed_at


def test_trace_context_flows_from_input_header_to_every_output(config):
    spans = InMemorySpanExporter()
    moderator = moderator_for(config, ScriptedSource(), spans)
    outputs = produced(
        moderator,
        [message({"id": "p9", "images": [{"data": PNG}]}, headers=[("traceparent", TRACEPARENT)])],
    )
    for out in outputs:
        traceparent = dict(out.headers)["traceparent"]
        assert traceparent.startswith(b"00-0af7651916cd43dd8448eb211c80319c-")
    verdict = Verdict.model_validate_json(outputs[0].value)
    assert verdict.trace_id == "0af7651916cd43dd8448eb211c80319c"
    names = {
        span.name
        for span in spans.get_finished_spans()
        if format(span.context.trace_id, "032x") == verdict.trace_id
    }
    assert {"consume", "fetch-image", "infer", "policy"} <= names


def test_spans_carry_no_post_text(config):
    spans = InMemorySpanExporter()
    moderator = moderator_for(config, ScriptedSource(), spans)
    produced(moderator, [message({"id": "p10", "text": "secret words", "images": [{"data": PNG}]})])
    for span in spans.get_finished_spans():
        assert "secret words" not in json.dumps(dict(span.attributes or {}), default=str)


def test_shadow_policy_reports_its_diff_and_routes_nothing(config, policy_dir):
    (policy_dir / "test-policy-next.yaml").write_text(SHADOW)
    moderator = moderator_for(config, ScriptedSource(weapon=0.3))
    outputs = by_topic(produced(moderator, [message({"id": "p11", "images": [{"data": PNG}]})]))
    assert Verdict.model_validate_json(outputs["moderation.verdicts"][0].value).action == "allow"
    shadow = ShadowVerdict.model_validate_json(outputs["moderation.shadow"][0].value)
    assert shadow.verdict.shadow is True and shadow.verdict.action == "block"
    assert shadow.diff is not None and shadow.diff.action == ("allow", "block")
    assert "review.weapons" not in outputs, "a shadow verdict must not route to a review queue"


def test_url_to_a_loopback_address_is_refused_and_dead_lettered(config):
    source = ScriptedSource()
    moderator = moderator_for(config, source)
    body = {"id": "ssrf", "images": [{"url": "http://127.0.0.1:9/admin.png"}]}
    [out] = produced(moderator, [message(body)])
    letter = DeadLetter.model_validate_json(out.value)
    assert (letter.stage, letter.error_type) == (Stage.FETCH_IMAGE, "BlockedAddress")
    assert letter.attempts == 1 and source.calls == []


def deep_post(depth):
    return b'{"id": "deep", "meta": ' + b'{"a": ' * (depth - 1) + b"1" + b"}" * (depth - 1) + b"}"


def test_hostile_posts_end_as_verdicts_or_dead_letters_and_spare_the_batch(config):
    moderator = moderator_for(config, ScriptedSource())
    raws = [
        b'{"id": "good-1", "text": "hello"}',
        b'{"id": "s1", "text": "replica \\ud800 rolex", "meta": {"k": "\\udfff"}}',
        deep_post(300),
        deep_post(1000),
        b'{"id": "good-2", "text": "hello"}',
    ]
    outputs = by_topic(produced(moderator, [message(r, offset=i) for i, r in enumerate(raws)]))
    verdicts = [Verdict.model_validate_json(o.value) for o in outputs["moderation.verdicts"]]
    assert [v.post_id for v in verdicts] == ["good-1", "s1", "good-2"]
    surrogate = verdicts[1]
    assert [c.field for c in surrogate.input_changes] == ["text", "meta.k"]
    assert [c.change for c in surrogate.input_changes] == ["surrogates-replaced"] * 2
    letters = [DeadLetter.model_validate_json(o.value) for o in outputs["moderation.dead-letter"]]
    assert [(d.offset, d.stage) for d in letters] == [(2, Stage.VALIDATE), (3, Stage.VALIDATE)]
    assert "32 levels" in letters[0].error and "32 levels" in letters[1].error


def test_long_text_is_cut_and_the_verdict_says_so(config):
    moderator = moderator_for(config, ScriptedSource())
    outputs = by_topic(
        produced(moderator, [message({"id": "long", "text": "buy followers " * 100_000})])
    )
    verdict = Verdict.model_validate_json(outputs["moderation.verdicts"][0].value)
    assert verdict.action == "review", "the cut text is still judged"
    [change] = verdict.input_changes
    assert change.field == "text" and change.change == "truncated"
    assert "20,000 of 1,400,000" in change.detail


def test_padding_before_the_words_is_collapsed_and_they_are_judged(config):
    moderator = moderator_for(config, ScriptedSource())
    padded = {"id": "pad", "text": " " * 20_000 + "\u200b" * 20_000 + "buy followers"}
    outputs = by_topic(produced(moderator, [message(padded)]))
    verdict = Verdict.model_validate_json(outputs["moderation.verdicts"][0].value)
    assert (verdict.action, [r.id for r in verdict.matched_rules]) == ("review", ["spam"])
    changes = [change.change for change in verdict.input_changes]
    assert changes == ["invisibles-removed", "whitespace-collapsed"]


def test_cut_text_is_not_allowed_by_a_policy_silent_on_it_whatever_the_message_claims(config):
    moderator = moderator_for(config, ScriptedSource(weapon=0.0))
    claims = {"id": "cut", "text": "ab " * 7000 + "buy followers", "truncated": False}
    outputs = by_topic(produced(moderator, [message(claims)]))
    verdict = Verdict.model_validate_json(outputs["moderation.verdicts"][0].value)
    assert (verdict.action, verdict.queue) == ("review", "cut-text")
    [rule] = verdict.matched_rules
    assert rule.id == "builtin.cut-text" and "posts.max_text_chars" in (rule.reason or "")
    assert [change.change for change in verdict.input_changes] == ["truncated"]
    task = ReviewTask.model_validate_json(outputs["review.cut-text"][0].value)
    assert task.verdict == verdict.model_copy(update={"record": None})
    assert verdict.record is not None and verdict.record.truncated is True


class ExplodingPolicies:
    """A policy set whose planning or evaluation raises for one post id, as an engine bug would."""

    def __init__(self, real, *, plan_fails=None, evaluate_fails=None):
        self.real, self.plan_fails, self.evaluate_fails = real, plan_fails, evaluate_fails

    def plan_for_post(self, post, *args, **kwargs):
        if post.id == self.plan_fails:
            raise ValueError("Failed to convert variable 'text': Conversion Error")
        return self.real.plan_for_post(post, *args, **kwargs)

    def evaluate(self, post, signals, **kwargs):
        if post.id == self.evaluate_fails:
            raise RecursionError("maximum recursion depth exceeded")
        return self.real.evaluate(post, signals, **kwargs)


@pytest.mark.parametrize(
    ("failing", "stage"), [("plan_fails", "policy"), ("evaluate_fails", "policy")]
)
def test_an_engine_fault_on_one_post_dead_letters_that_post_only(config, failing, stage):
    moderator = moderator_for(config, ScriptedSource())
    real = moderator.policies()
    moderator.policies = lambda: ExplodingPolicies(real, **{failing: "bad"})
    batch = [message({"id": i, "text": "hello"}, offset=n) for n, i in enumerate(["a", "bad", "c"])]
    outputs = by_topic(produced(moderator, batch))
    ids = [Verdict.model_validate_json(o.value).post_id for o in outputs["moderation.verdicts"]]
    assert ids == ["a", "c"]
    [letter] = [DeadLetter.model_validate_json(o.value) for o in outputs["moderation.dead-letter"]]
    assert (letter.post_id, letter.stage, letter.offset) == ("bad", stage, 1)
    assert "\n" not in letter.error


def test_policy_time_budget_turns_late_rules_into_rule_errors(config):
    moderator = moderator_for(config, ScriptedSource())
    moderator.policy_budget_s = 0.0  # spent before the first rule
    [out] = produced(moderator, [message({"id": "slow", "text": "buy followers"})])
    verdict = Verdict.model_validate_json(out.value)
    assert verdict.action == "allow" and verdict.matched_rules == []
    assert {e.id for e in verdict.rule_errors} == {"threat", "spam", "weapon"}
    assert all("time budget of 0 ms ran out" in e.error for e in verdict.rule_errors)


class CountingPolicies(ExplodingPolicies):
    """Counts planning calls per post id."""

    def __init__(self, real):
        super().__init__(real)
        self.plans: list[str] = []

    def plan_for_post(self, post, *args, **kwargs):
        self.plans.append(post.id)
        return super().plan_for_post(post, *args, **kwargs)


def test_a_post_is_planned_again_only_when_a_stage_computed_something_for_it(config):
    moderator = moderator_for(config, ScriptedSource())
    counting = CountingPolicies(moderator.policies())
    moderator.policies = lambda: counting
    assert len(moderator.gatherer.stages()) == 3, "links, then the specialists, then the model"
    produced(moderator, [message({"id": "img", "images": [{"data": PNG}]})])
    assert counting.plans == ["img"], "no cheap producer ran for it: one plan serves every stage"
