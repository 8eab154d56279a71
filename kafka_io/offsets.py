"""Which offsets are safe to commit when batches finish out of order (at-least-once)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P")  # a partition key, e.g. kafka's TopicPartition


@dataclass
class _PartitionOffsets:
    outstanding: deque[int] = field(default_factory=deque)
    done: set[int] = field(default_factory=set)
    next_commit: int | None = None

    def advance(self) -> None:
        while self.outstanding and self.outstanding[0] in self.done:
            offset = self.outstanding.popleft()
            self.done.discard(offset)
            self.next_commit = offset + 1


class OffsetTracker(Generic[P]):
    """Tracks handed-out offsets; commits never pass an offset that is not done yet.

    Offsets of one partition are handed out in increasing order. The committable position of a
    partition is one past the highest offset below which everything is done.
    """

    def __init__(self) -> None:
        self._partitions: dict[P, _PartitionOffsets] = {}
        self._committed: dict[P, int] = {}

    def track(self, partition: P, offset: int) -> None:
        """Record that `offset` was handed out for processing."""
        self._partitions.setdefault(partition, _PartitionOffsets()).outstanding.append(offset)

    def mark_done(self, partition: P, offset: int) -> None:
        """Record that `offset` was fully processed (its outputs acked)."""
        state = self._partitions.get(partition)
        if state is None or not state.outstanding or offset < state.outstanding[0]:
            return  # forgotten partition, or already passed
        state.done.add(offset)
        state.advance()

    def pending(self) -> int:
        """How many handed-out offsets are not done yet."""
        return sum(len(s.outstanding) - len(s.done) for s in self._partitions.values())

    def to_commit(self) -> dict[P, int]:
        """Positions that moved since the last `committed` call."""
        return {
            partition: state.next_commit
            for partition, state in self._partitions.items()
            if state.next_commit is not None and state.next_commit != self._committed.get(partition)
        }

    def committed(self, positions: dict[P, int]) -> None:
        """Record that `positions` reached the broker."""
        self._committed.update(positions)

    def forget(self, partitions: Iterable[P]) -> None:
        """Drop all state of partitions this consumer no longer owns."""
        for partition in partitions:
            self._partitions.pop(partition, None)
            self._committed.pop(partition, None)

    def rewind(self, partition: P, offset: int) -> None:
        """Drop outstanding offsets at or past `offset`; they will be handed out again."""
        state = self._partitions.get(partition)
        if state is None:
            return
        state.outstanding = deque(o for o in state.outstanding if o < offset)
        state.done = {o for o in state.done if o < offset}
