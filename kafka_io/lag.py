"""A consumer group's lag as an outside observer reads it: end offsets less committed offsets.

This is what KEDA's Kafka scaler reads. The reader never joins the group (no rebalance): it
only asks the broker for the group's committed offsets and the partitions' end offsets.
Kafka answers the end offset with the high watermark. The Tansu broker the tests run answers
it with the first offset of the partition's last batch, so there the lag reads short by up to
one producer batch a partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from kafka_io.clients import reaching_kafka
from kafka_io.settings import KafkaSettings


@dataclass(frozen=True)
class GroupLag:
    """Messages the group has not committed yet over its topics, and their partition count."""

    lag: int
    partitions: int


class GroupLagReader:
    """Reads one group's lag over `topics`; one connection, kept between reads."""

    def __init__(self, settings: KafkaSettings, group: str, topics: Sequence[str]) -> None:
        self.settings = settings
        self.topics = list(topics)
        with reaching_kafka(settings):
            self._consumer = KafkaConsumer(
                **settings.client_kwargs(), group_id=group, enable_auto_commit=False
            )

    def read(self) -> GroupLag:
        """The lag now; a partition the group never committed counts from its first offset."""
        with reaching_kafka(self.settings):
            partitions = self._partitions()
            if not partitions:
                return GroupLag(0, 0)
            ends = self._consumer.end_offsets(partitions)
            starts = self._consumer.beginning_offsets(partitions)
            lag = 0
            for partition in partitions:
                committed = self._consumer.committed(partition)
                done = starts[partition] if committed is None else committed
                lag += max(0, ends[partition] - done)
        return GroupLag(lag, len(partitions))

    def _partitions(self) -> list[TopicPartition]:
        return [
            TopicPartition(topic, number)
            for topic in self.topics
            for number in sorted(self._consumer.partitions_for_topic(topic) or ())
        ]

    def close(self) -> None:
        """Close the connection; the group is untouched."""
        self._consumer.close(autocommit=False)
