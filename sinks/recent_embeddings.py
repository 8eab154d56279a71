"""The recent-embeddings sink: the post embedding of each decided post a head scored, kept in
the Redis window (`heads.recent`), so a head version promoted later re-checks those posts.

Like the recent-images sink it is an aid, not the post's outcome: a Redis failure is logged with
the posts it leaves out and never holds the batch back.
"""

from __future__ import annotations

from contracts.outcomes import Outcome
from contracts.producers import request_key
from contracts.vlm_signals import EMBED_PRODUCER, POST_EMBEDDING
from heads.recent import RecentEmbedding, RecentEmbeddings
from sinks.window import WindowSink

HEADS = "heads"
POST_EMBEDDING_KEY = request_key(POST_EMBEDDING)


class RecentEmbeddingsSink(WindowSink):
    """Adds every outcome a head scored to the window; never fails the batch."""

    name = "recent-embeddings"
    left_out_misses = "a head promoted later will not re-check them"

    def __init__(self, store: RecentEmbeddings) -> None:
        super().__init__(store)

    @staticmethod
    def entry(outcome: Outcome) -> RecentEmbedding | None:
        return recent_embedding(outcome)


def recent_embedding(outcome: Outcome) -> RecentEmbedding | None:
    """The window entry of a decided post a head scored: its embedding from its record."""
    verdicts = [each.verdict for each in outcome.verdicts]
    verdicts += [each.verdict for each in outcome.shadows]
    if outcome.post_id is None or not verdicts:
        return None
    if not any(run.name == HEADS for run in verdicts[0].producers):
        return None
    record = next((v.record for v in verdicts if v.record is not None), None)
    if record is None:
        return None
    vector = next(
        (
            v.value
            for v in record.values
            if v.producer == EMBED_PRODUCER and v.request == POST_EMBEDDING_KEY
        ),
        None,
    )
    if not isinstance(vector, list) or not vector:
        return None
    model = verdicts[0].model.name if verdicts[0].model else ""
    source = outcome.source
    return RecentEmbedding(
        outcome.post_id, source.topic, source.partition, source.offset, model, tuple(vector)
    )
