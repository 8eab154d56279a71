"""Retroactive matching: posts seen before their images were banked are decided again.

    vlmod bank add known-bad flyer.jpg --config deploy/pipeline.yaml

After the images are banked, the recent-images window (`operators.specialists.recent_images`)
is searched for posts with an image within the bank's threshold of a new hash
(`posts_matching`). Each such post is read back from where it was consumed (topic, partition,
offset) and published again to that topic, unchanged, with the header
`vlmod-recheck: bank NAME@VERSION` (`republish`). The pipeline decides it as any post, with two
differences: the `banks` producer reads the banks from Redis at once instead of from a copy up
to `refresh_s` old, and each verdict carries `recheck` and a key of its own, so the verdict
topic, the sinks and the review queues take it as a new decision.

A post whose message the topic no longer holds (past its retention) cannot be decided again:
it is named in the result, never skipped quietly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from contracts.records import RECHECK_HEADER
from heads.recent import RecentEmbeddings
from kafka_io.clients import OutMessage, kafka_writer, reaching_kafka
from operators.specialists.hashindex import HashIndex
from operators.specialists.recent_images import RecentImage, RecentImages
from sinks.base import Sink
from sinks.recent_embeddings import RecentEmbeddingsSink
from sinks.recent_images import RecentImagesSink

if TYPE_CHECKING:
    from kafka_io.settings import KafkaSettings
    from pipelines.config import PipelineConfig

FETCH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Rechecked:
    """What a re-check did: the posts published again, and those it could not read back."""

    published: tuple[str, ...] = ()
    gone: tuple[str, ...] = ()  # no longer in their topic
    reason: str = ""
    window: int = 0  # posts in the window searched
    malformed: int = 0  # window entries that could not be read
    matched: tuple[RecentImage, ...] = field(default=(), repr=False)


def recent_sinks(settings: PipelineConfig) -> list[Sink]:
    """The windows' sinks: recent images for banks, recent embeddings for heads, each where the
    pipeline has Redis, the producer and a window size."""
    sinks: list[Sink] = []
    if not settings.redis_url:
        return sinks
    if window := recent_window(settings):
        sinks.append(RecentImagesSink(RecentImages(settings.redis_url, window=window)))
    if window := recent_heads_window(settings):
        sinks.append(RecentEmbeddingsSink(RecentEmbeddings(settings.redis_url, window=window)))
    return sinks


def recent_heads_window(settings: PipelineConfig) -> int:
    """`specialists.heads.recent_window`, or 0 where this pipeline has no `heads` producer."""
    from heads.producer import HeadSettings

    section = settings.producer_context().settings.get("heads")
    return section.recent_window if isinstance(section, HeadSettings) else 0


def recent_window(settings: PipelineConfig) -> int:
    """`specialists.banks.recent_window`, or 0 where this pipeline has no `banks` producer."""
    from operators.specialists.settings import BankSettings

    # Every producer the pipeline registers with settings has its section, given or default.
    section = settings.producer_context().settings.get("banks")
    return section.recent_window if isinstance(section, BankSettings) else 0


def posts_matching(
    window: Sequence[RecentImage], hashes: Sequence[str], threshold: int
) -> list[RecentImage]:
    """The window's posts with an image within `threshold` bits of one of `hashes`.

    One entry per post, its latest (a post published again is read again where it was last
    seen), in the order the posts were first seen.
    """
    if not hashes or not window:
        return []
    index = HashIndex([bytes.fromhex(h) for h in hashes], max_threshold=threshold)
    latest = {entry.post_id: entry for entry in window}
    posts = [latest[post_id] for post_id in dict.fromkeys(entry.post_id for entry in window)]
    owners = [n for n, entry in enumerate(posts) for _ in entry.hashes]
    queries = [bytes.fromhex(h) for entry in posts for h in entry.hashes]
    hit = {owners[i] for i, found in enumerate(index.nearest(queries, threshold)) if found}
    return [entry for n, entry in enumerate(posts) if n in hit]


def recheck(
    store: RecentImages,
    kafka: KafkaSettings | None,
    hashes: Sequence[str],
    threshold: int,
    reason: str,
) -> Rechecked:
    """Find the window's posts matching `hashes`; publish them again when `kafka` is given."""
    window, malformed = store.read()
    matched = posts_matching(window, hashes, threshold)
    if kafka is None or not matched:
        return Rechecked(
            reason=reason, window=_posts(window), malformed=malformed, matched=tuple(matched)
        )
    with reaching_kafka(kafka):
        published, gone = republish(kafka, matched, reason)
    return Rechecked(published, gone, reason, _posts(window), malformed, tuple(matched))


def _posts(window: Sequence[RecentImage]) -> int:
    return len({entry.post_id for entry in window})


class SeenPost(Protocol):
    """A post of a window: its id and where it was read."""

    @property
    def post_id(self) -> str: ...
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


def republish(
    kafka: KafkaSettings, posts: Sequence[SeenPost], reason: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Publish each post again to its topic with the re-check header; (published, gone) ids."""
    found = read_back(kafka, posts)
    header = [(RECHECK_HEADER, reason.encode())]
    messages = [
        OutMessage(post.topic, value, key, list(header))
        for post in posts
        if (record := found.get((post.topic, post.partition, post.offset))) is not None
        for key, value in [record]
    ]
    writer = kafka_writer(kafka)
    try:
        writer.send_all(messages)
    finally:
        writer.close()
    published = tuple(p.post_id for p in posts if (p.topic, p.partition, p.offset) in found)
    gone = tuple(p.post_id for p in posts if (p.topic, p.partition, p.offset) not in found)
    return published, gone


Where = tuple[str, int, int]


def read_back(
    kafka: KafkaSettings, posts: Sequence[SeenPost]
) -> dict[Where, tuple[bytes | None, bytes]]:
    """(key, value) of each post's message, by (topic, partition, offset); absent when gone."""
    from kafka import KafkaConsumer, TopicPartition

    wanted: dict[TopicPartition, set[int]] = {}
    for post in posts:
        wanted.setdefault(TopicPartition(post.topic, post.partition), set()).add(post.offset)
    consumer = KafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    found: dict[Where, tuple[bytes | None, bytes]] = {}
    try:
        for partition, offsets in wanted.items():
            found.update(_read_partition(consumer, partition, offsets))
    finally:
        consumer.close()
    return found


def _read_partition(
    consumer: Any, partition: Any, offsets: set[int]
) -> dict[Where, tuple[bytes | None, bytes]]:
    """The messages at `offsets` of one partition, each read by a seek to it."""
    consumer.assign([partition])
    start = consumer.beginning_offsets([partition])[partition]
    # Kafka's end offset is the next one to write; some brokers (Tansu) give the last written.
    end = consumer.end_offsets([partition])[partition]
    found: dict[Where, tuple[bytes | None, bytes]] = {}
    for offset in sorted(o for o in offsets if start <= o <= end):
        record = _record_at(consumer, partition, offset)
        if record is not None:
            found[(partition.topic, partition.partition, offset)] = (record.key, record.value)
    return found


def _record_at(consumer: Any, partition: Any, offset: int) -> Any:
    """The record at `offset`, or None when the partition has none there (compacted away, or
    the partition ends before it)."""
    consumer.seek(partition, offset)
    deadline = time.monotonic() + FETCH_TIMEOUT_S
    while time.monotonic() < deadline:
        for record in consumer.poll(timeout_ms=500, max_records=1).get(partition, []):
            return record if record.offset == offset else None
    return None  # nothing at or past it: the partition ends before it
