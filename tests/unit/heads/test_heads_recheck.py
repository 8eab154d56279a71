"""Retroactive matching for heads: which recent posts a new version flags otherwise, the window
entry a decided post leaves, and the producer reading heads at once for a post decided again."""

from __future__ import annotations

import math
import time

import pytest

from contracts.history import PostRecord, RecordedValue
from contracts.outcomes import ActiveVerdict, Outcome, SourceRef
from contracts.producers import ProducerJob, request_key
from contracts.records import ModelRef, PolicyRef, Post, ProducerRun, Verdict
from contracts.vlm import About, TaskKind, VlmTask
from contracts.vlm_signals import EMBED_PRODUCER, POST_EMBEDDING
from heads.model import EmbeddingRef, Head
from heads.producer import HeadSignals
from heads.recent import RecentEmbedding
from heads.recheck import posts_flipped
from sinks.recent_embeddings import recent_embedding


def head(sign: float, version: int = 1) -> Head:
    """A head on 2-dim embeddings whose score is the logistic of sign * x[0]."""
    return Head(
        name="wave",
        version=version,
        weights=[sign, 0.0],
        bias=0.0,
        threshold=0.5,
        embedding=EmbeddingRef(model="m", dim=2),
        training_sha256="0" * 64,
        examples=10,
        positives=5,
    )


def entry(post_id: str, x: float, offset: int = 0, dims: int = 2) -> RecentEmbedding:
    return RecentEmbedding(post_id, "posts", 0, offset, "m", (x, *[0.0] * (dims - 1)))


def test_the_posts_a_new_version_flags_otherwise_either_way_and_only_those():
    window = [entry("up", 2.0), entry("down", -2.0), entry("wide", 2.0, dims=3)]
    flipped = posts_flipped(window, head(+1.0), head(-1.0, version=2))
    assert [e.post_id for e in flipped] == ["up", "down"], "the 3-dim post is not the head's"
    assert posts_flipped(window, head(+1.0), head(+1.0, version=2)) == []
    first = posts_flipped(window, None, head(+1.0))
    assert [e.post_id for e in first] == ["up"], "no version before flags nothing"


def test_a_post_seen_twice_is_judged_once_where_it_was_read_last():
    window = [entry("p", 2.0, offset=1), entry("q", 2.0, offset=2), entry("p", 2.0, offset=9)]
    flipped = posts_flipped(window, None, head(+1.0))
    assert [(e.post_id, e.offset) for e in flipped] == [("p", 9), ("q", 2)]


def test_a_window_entry_reads_back_and_a_malformed_one_is_refused():
    one = RecentEmbedding("p", "posts", 3, 41, "org/model", (0.25, -1.5, 3.0))
    assert RecentEmbedding.from_fields(one.fields()) == one
    with pytest.raises(ValueError):
        RecentEmbedding.from_fields({**one.fields(), "vec": b"abc"})
    with pytest.raises(ValueError):
        RecentEmbedding.from_fields({**one.fields(), "vec": b"\x00\x00\xc0\x7f"})  # NaN
    with pytest.raises(KeyError):
        RecentEmbedding.from_fields({"post": b"p"})


def _outcome(runs: list[str], vector: list[float] | None) -> Outcome:
    key = request_key(VlmTask(TaskKind.EMBED, "", About.POST))
    values = [RecordedValue(producer="embed", request=key, value=vector)] if vector else []
    verdict = Verdict(
        post_id="p",
        key="k",
        action="allow",
        policy=PolicyRef(id="x", version=1, sha256="0" * 64),
        model=ModelRef(name="org/model"),
        producers=[ProducerRun(name=name, ms=1.0) for name in runs],
        record=PostRecord(post={"id": "p"}, values=values),
    )
    return Outcome(
        source=SourceRef(topic="posts", partition=1, offset=5),
        post_id="p",
        post=Post(id="p"),
        verdicts=(ActiveVerdict(verdict=verdict),),
    )


def test_a_post_a_head_scored_leaves_its_embedding_and_where_it_was_read():
    found = recent_embedding(_outcome(["embed", "heads"], [0.5, 1.0]))
    assert found == RecentEmbedding("p", "posts", 1, 5, "org/model", (0.5, 1.0))
    assert recent_embedding(_outcome(["embed"], [0.5, 1.0])) is None, "no head scored it"
    assert recent_embedding(_outcome(["embed", "heads"], None)) is None, "nothing embedded"


def test_a_post_decided_again_reads_the_heads_at_once():
    producer = HeadSignals()
    reads = []

    def read(name):
        reads.append(name)
        return head(+1.0)

    producer._read = read  # type: ignore[method-assign]
    signals = {EMBED_PRODUCER: {POST_EMBEDDING: [math.log(3.0), 0.0]}}
    job = ProducerJob(Post(id="p"), frozenset({"wave"}), signals=signals)
    producer.compute([job])
    producer.compute([job])
    assert reads == ["wave"], "read once per refresh_s"
    again = ProducerJob(Post(id="p"), frozenset({"wave"}), signals=signals, recheck="head wave@2")
    [out] = producer.compute([again])
    assert reads == ["wave", "wave"] and out.values["wave"] == pytest.approx(0.75)
    assert producer._held["wave"][0] <= time.monotonic()
