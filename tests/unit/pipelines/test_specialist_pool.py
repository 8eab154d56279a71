"""`specialists.placement: pool`: the specialists run off the consumer, with the same verdicts.

The pool here is the in-process source (`InProcessSpecialists`), what each Serve replica runs;
the tests count what the consumer sends it.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import NoOpTracerProvider

from contracts.producers import Ask, Cost, Input, Placement, ProducerJob, Variable, bind_all
from contracts.records import Post
from demo.samples import sample_posts
from kafka_io.settings import KafkaSettings
from operators.cache import SignalCache
from pipelines.config import PipelineConfig, RetrySettings, SpecialistSettings
from pipelines.journey import SourceMessage
from pipelines.local import build_moderator
from pipelines.model_settings import ModelSettings
from pipelines.pooled import independent_runs
from pipelines.producer_registry import pipeline_registry, producer_registry
from pipelines.specialist_work import InProcessSpecialists, SpecialistWork
from pipelines.steps import Moderator
from pipelines.telemetry import telemetry
from pipelines.wiring import build_model_sources
from policies.loader import load_policy_dir
from sinks.kafka_topics import kafka_batch
from tests.unit.pipelines.test_kafka_golden import masked, source_messages

ROOT = Path(__file__).resolve().parents[3]


class CountingPool:
    """The in-process pool, recording every call; `failures` calls raise first. What crosses
    goes through pickle both ways, as it crosses to a Serve replica."""

    def __init__(self, pool: InProcessSpecialists, failures: int = 0) -> None:
        self.pool = pool
        self.name = "test-pool"
        self.failures = failures
        self.calls: list[SpecialistWork] = []

    def compute(self, work: SpecialistWork):
        self.calls.append(work)
        if len(self.calls) <= self.failures:
            raise ConnectionError("pool is down")
        answers = self.pool.compute(pickle.loads(pickle.dumps(work)))
        return pickle.loads(pickle.dumps(answers))


class Caps:
    """`signals.caps: true`: the share of capitals in the text; a specialist-cost producer."""

    name = "caps"
    variables = (Variable("caps", "double"),)
    inputs = frozenset({Input.TEXT})
    placement = Placement.CONSUMER
    cost = Cost.SPECIALIST
    version = "1"
    config = bool
    after: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.seen: list[str] = []

    def asks(self, value: bool) -> list[Ask]:
        return [Ask("caps", None, "share")] if value else []

    def compute(self, jobs: Sequence[ProducerJob]) -> list[Mapping[Hashable, Any] | Exception]:
        out: list[Mapping[Hashable, Any] | Exception] = []
        for job in jobs:
            self.seen.append(job.post.id)
            if job.post.id.startswith("bad"):
                out.append(ValueError("cannot read this text"))
                continue
            letters = [c for c in job.post.text or "" if c.isalpha()]
            out.append({"share": sum(c.isupper() for c in letters) / max(1, len(letters))})
        return out


CAPS_POLICY = """
id: caps
version: 1
signals: {caps: true}
rules:
  - {id: shouting, when: caps > 0.9, action: review}
"""


def _config(placement: str, **more: Any) -> PipelineConfig:
    settings: dict[str, Any] = {
        "kafka": KafkaSettings(bootstrap_servers="unused:9092"),
        "policy_dir": str(ROOT / "policies" / "examples"),
        "model": ModelSettings(name_or_path="noop"),
        "specialists": SpecialistSettings(placement=placement),  # type: ignore[arg-type]
    }
    return PipelineConfig(**{**settings, **more})


def _golden_moderator(placement: str) -> tuple[Moderator, CountingPool]:
    """The golden test's moderator; with `pool`, its specialists on an in-process pool."""
    config = _config(placement)
    registry = pipeline_registry(config)
    policies = load_policy_dir(config.policy_dir, registry=registry)
    pool_registry = pipeline_registry(config)  # the replica builds its own from the config
    bind_all(pool_registry, config.producer_context())
    pool = CountingPool(InProcessSpecialists(pool_registry, config.images))
    tele = telemetry(tracer_provider=NoOpTracerProvider())
    sources = build_model_sources(config)
    specialists = pool if placement == "pool" else None
    moderator = build_moderator(config, policies, sources, tele, registry, specialists)
    return moderator, pool


def _messages(moderator: Moderator) -> list[dict[str, Any]]:
    outcomes = moderator.moderate(source_messages())
    produced = kafka_batch(outcomes, moderator.topics)
    return [{"topic": m.topic, "key": m.key, "value": masked(m.value)} for m in produced]


def test_the_example_policies_give_the_same_verdicts_with_the_pool_as_on_the_consumer():
    here, unused = _golden_moderator("consumer")
    pooled, pool = _golden_moderator("pool")
    on_consumer, on_pool = _messages(here), _messages(pooled)
    assert not unused.calls
    assert [work.producers for work in pool.calls] == [("banks", "nsfw", "ocr"), ("profanity",)]
    assert len(on_pool) == len(on_consumer)
    for got, want in zip(on_pool, on_consumer, strict=True):
        assert got == want
    runs = [r for m in on_pool for r in json.loads(m["value"]).get("producers", [])]
    assert {r["name"] for r in runs} >= {"nsfw", "ocr", "banks", "profanity"}


def test_each_posts_images_go_once_per_call_and_only_to_the_group_that_reads_them():
    moderator, pool = _golden_moderator("pool")
    _messages(moderator)
    posts = {}
    for sample in sample_posts(12, seed=3):
        try:
            post = json.loads(sample.value)
        except ValueError:
            continue  # the malformed samples never reach a producer
        if isinstance(post, dict) and "id" in post:
            posts[post["id"]] = post
    images, text = pool.calls
    assert any(sent.images for sent in images.posts)
    for sent in images.posts:
        assert sent.post.images == [], "the refs' base64 would send the bytes twice"
        assert len(sent.images) == len(posts[sent.post.id].get("images", []))
    assert all(sent.images == () for sent in text.posts)
    profanity = [sent for sent in text.posts if "ocr" in sent.signals.get("profanity", {})]
    assert profanity, "profanity reads the OCR text computed by the call before"


def _caps_moderator(tmp_path, pool_failures: int = 0, placement: str = "pool", **more: Any):
    (tmp_path / "caps.yaml").write_text(CAPS_POLICY)
    config = _config(placement, policy_dir=str(tmp_path), **more)
    registry = producer_registry([f"{__name__}:Caps"])
    policies = load_policy_dir(tmp_path, registry=registry)
    pool = CountingPool(InProcessSpecialists(registry, config.images), pool_failures)
    specialists = pool if placement == "pool" else None
    sources = build_model_sources(config)
    moderator = build_moderator(
        config, policies, sources, registry=registry, specialists=specialists
    )
    moderator.gatherer.sleep = lambda seconds: None
    return moderator, pool, registry.get("caps")


def _batch(*posts: tuple[str, str]) -> list[SourceMessage]:
    return [
        SourceMessage(
            json.dumps({"id": post_id, "text": text}).encode(), post_id.encode(), "p", 0, n
        )
        for n, (post_id, text) in enumerate(posts)
    ]


def test_a_pool_that_keeps_failing_leaves_the_values_unavailable_and_the_post_judged(tmp_path):
    moderator, pool, _ = _caps_moderator(tmp_path, pool_failures=99)
    [outcome] = moderator.moderate(_batch(("a", "HELLO THERE")))
    assert outcome.dead_letter is None
    assert len(pool.calls) == RetrySettings().max_attempts
    verdict = outcome.most_severe()
    assert verdict is not None and verdict.action == "allow"
    reason = "specialist pool test-pool failed 3 tries: ConnectionError: pool is down"
    [run] = [r for r in verdict.producers if r.name == "caps"]
    assert run.unavailable == reason
    [error] = verdict.rule_errors
    assert error.id == "shouting" and reason in error.error


def test_a_pool_that_fails_once_answers_on_the_retry(tmp_path):
    moderator, pool, _ = _caps_moderator(tmp_path, pool_failures=1)
    [outcome] = moderator.moderate(_batch(("a", "HELLO THERE")))
    assert len(pool.calls) == 2
    verdict = outcome.most_severe()
    assert verdict is not None and verdict.action == "review"
    assert not verdict.rule_errors


def test_one_try_allowed_makes_the_values_unavailable_at_once(tmp_path):
    retry = RetrySettings(max_attempts=1)
    moderator, pool, _ = _caps_moderator(tmp_path, pool_failures=99, retry=retry)
    [outcome] = moderator.moderate(_batch(("a", "HELLO")))
    assert len(pool.calls) == 1 and outcome.dead_letter is None
    [run] = [r for r in outcome.most_severe().producers if r.name == "caps"]
    assert (
        run.unavailable == "specialist pool test-pool failed 1 try: ConnectionError: pool is down"
    )


def test_cache_hits_are_not_sent_to_the_pool(tmp_path):
    moderator, pool, caps = _caps_moderator(tmp_path)
    cache = SignalCache.in_memory()
    moderator.gatherer.cache = cache
    first = moderator.moderate(_batch(("a", "HELLO"), ("b", "quiet")))
    assert [sorted(p.post.id for p in work.posts) for work in pool.calls] == [["a", "b"]]
    again = moderator.moderate(_batch(("c", "HELLO"), ("d", "new text")))
    assert [p.post.id for p in pool.calls[1].posts] == ["d"], "c reads what a stored"
    assert len(pool.calls) == 2 and caps.seen == ["a", "b", "d"]
    [run] = [r for r in again[0].most_severe().producers if r.name == "caps"]
    assert run.cached
    assert [o.most_severe().action for o in first + again] == ["review", "allow", "review", "allow"]


@pytest.mark.parametrize("placement", ["consumer", "pool"])
def test_a_producer_error_in_the_pool_fails_the_post_as_on_the_consumer(tmp_path, placement):
    moderator, _, caps = _caps_moderator(tmp_path, placement=placement)
    good, bad = moderator.moderate(_batch(("good", "HEY"), ("bad-1", "HEY")))
    assert good.dead_letter is None and good.most_severe().action == "review"
    assert bad.dead_letter is not None
    assert (bad.dead_letter.error_type, bad.dead_letter.error) == (
        "ValueError",
        "caps: cannot read this text",
    )
    assert caps.seen.count("bad-1") == RetrySettings().max_attempts
    assert caps.seen.count("good") == 1


def test_a_producer_reading_one_earlier_in_its_group_goes_in_a_later_call():
    class Reader(Caps):
        name = "reader"
        after = ("caps",)

    caps, reader, other = Caps(), Reader(), Caps()
    assert [[p.name for p in run] for run in independent_runs([caps, reader, other])] == [
        ["caps"],
        ["reader", "caps"],
    ]


def test_the_pool_is_handed_posts_without_their_image_refs():
    post = Post.model_validate({"id": "p", "images": [{"url": "http://example.com/a.png"}]})
    from pipelines.specialist_work import without_images

    assert without_images(post).images == [] and post.images


def test_the_specialist_pool_deployment_is_sized_as_specialists_pool_says(tmp_path):
    from pipelines.config import load_config
    from pipelines.specialist_pool import specialist_app_name, specialist_deployment

    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "kafka: {bootstrap_servers: 'x:9092'}\nconsumer_group: g\nspecialists:\n"
        "  placement: pool\n"
        "  pool: {min_replicas: 1, max_replicas: 8, num_cpus: 2, target_ongoing_requests: 4,\n"
        "         look_back_period_s: 15, resources: {cpu_node: 1}}\n"
    )
    config = load_config(path)
    bound = specialist_deployment(config)._bound_deployment
    assert bound.name == "specialists"
    assert bound.ray_actor_options == {"num_cpus": 2.0, "resources": {"cpu_node": 1.0}}
    scaling = bound._deployment_config.autoscaling_config
    assert (scaling.min_replicas, scaling.max_replicas) == (1, 8)
    assert scaling.target_ongoing_requests == 4
    assert scaling.look_back_period_s == 15.0
    assert specialist_app_name(config) == "vlmod-specialists-g"


class PoolHandle:
    """The specialist deployment's handle without Ray: `.remote(work)` runs the replica's core."""

    def __init__(self, config: PipelineConfig) -> None:
        registry = pipeline_registry(config)  # what SpecialistReplica.__init__ builds
        bind_all(registry, config.producer_context())
        self.pool = CountingPool(InProcessSpecialists(registry, config.images))

    def options(self, *, _by_reference: bool) -> PoolHandle:
        """The by-value twin Serve gives (`pipelines.replica_calls`): in process, the same."""
        return self

    def remote(self, work: SpecialistWork) -> Any:
        from tests.unit.pipelines.test_moderate_golden import Call

        return Call(self.pool.compute(work))


def test_the_http_api_sends_its_specialists_to_the_apps_pool(tmp_path):
    from pipelines.serving import ModerationApi
    from tests.unit.pipelines.test_moderate_golden import ReplicaHandle, http_answer

    (tmp_path / "caps.yaml").write_text(CAPS_POLICY)
    config = _config("pool", policy_dir=str(tmp_path), producers=[f"{__name__}:Caps"])
    [ingress] = [c for c in ModerationApi.func_or_class.__mro__ if "moderate" in vars(c)]
    handles = {name: ReplicaHandle(config, name) for name in config.model_names()}
    pool = PoolHandle(config)
    api = object.__new__(ingress)
    ingress.__init__(api, config.model_dump(mode="json"), handles, pool)
    status, body = http_answer(api, json.dumps({"id": "h", "text": "LOUD"}).encode())
    assert (status, body["action"]) == (200, "review")
    assert [work.producers for work in pool.pool.calls] == [("caps",)]


def test_the_serve_replica_runs_in_process_from_the_dumped_config(tmp_path):
    import asyncio

    from pipelines.specialist_pool import SpecialistReplica
    from pipelines.specialist_work import SpecialistPost

    config = _config("pool", producers=[f"{__name__}:Caps"])
    replica = SpecialistReplica.func_or_class(config.model_dump(mode="json"))
    post = SpecialistPost(Post(id="r", text="ABc"), {"caps": frozenset({"share"})})
    [answer] = asyncio.run(replica(SpecialistWork(("caps",), (post,))))
    assert answer.outputs["caps"].values == {"share": 2 / 3}
