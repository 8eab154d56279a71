"""Active learning: `heads_learn["NAME"]` picks a share of the posts whose score lies near the
head's threshold, the same posts every time, and never a confident one."""

from __future__ import annotations

import math
import time

from contracts.producers import ProducerContext, ProducerJob, Unavailable
from contracts.records import Post
from contracts.vlm_signals import EMBED_PRODUCER, POST_EMBEDDING
from heads.producer import (
    LEARN,
    HeadSettings,
    HeadSignals,
    LearningSettings,
)
from tests.unit.heads.held import producer_holding


def _producer(share: float, band: float = 0.1) -> HeadSignals:
    learning = LearningSettings(band=band, share=share)
    context = ProducerContext(settings={"heads": HeadSettings(learning=learning)})
    return producer_holding(context, version=3, model="m")


def _job(post_id: str, score: float, requests=("wave", (LEARN, "wave"))) -> ProducerJob:
    logit = math.log(score / (1 - score))
    signals = {EMBED_PRODUCER: {POST_EMBEDDING: [logit, 0.0]}}
    return ProducerJob(Post(id=post_id), frozenset(requests), signals=signals)


def test_a_share_of_the_uncertain_posts_is_picked_and_no_confident_one():
    producer = _producer(share=0.2)
    near = producer.compute([_job(f"n{i}", 0.45 + (i % 10) / 100) for i in range(2000)])
    far = producer.compute([_job(f"f{i}", 0.95 if i % 2 else 0.03) for i in range(500)])
    picked = sum(out.values[(LEARN, "wave")] for out in near)
    assert 340 <= picked <= 460, picked  # 20 % of 2,000, within 4.5 sigma
    assert not any(out.values[(LEARN, "wave")] for out in far)
    chosen = next(out for out in near if out.values[(LEARN, "wave")])
    assert chosen.evidence == {"versions": {"wave": 3}, "learn": ["wave"]}


def test_the_same_posts_are_picked_again():
    first = _producer(share=0.5).compute([_job(f"p{i}", 0.5) for i in range(200)])
    again = _producer(share=0.5).compute([_job(f"p{i}", 0.5) for i in range(200)])
    assert [o.values[(LEARN, "wave")] for o in first] == [o.values[(LEARN, "wave")] for o in again]


def test_the_pick_alone_can_be_asked_and_a_missing_head_makes_it_unavailable():
    producer = _producer(share=1.0)
    [out] = producer.compute([_job("p", 0.52, requests=((LEARN, "wave"),))])
    assert out.values == {(LEARN, "wave"): True}
    producer._held["gone"] = (time.monotonic(), None)
    [out] = producer.compute([_job("p", 0.52, requests=((LEARN, "gone"), "gone"))])
    assert isinstance(out.values[(LEARN, "gone")], Unavailable)
    assert out.values[(LEARN, "gone")] == out.values["gone"]
