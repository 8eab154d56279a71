"""The sink protocol: where a batch's outcomes are written before its offsets are committed.

A sink's `write(outcomes)` returns only once they are durable (acknowledged, committed). If it
cannot write them, past its own retries, it raises: the batch is not committed and is read again,
so a sink must take the same outcomes twice without harm (upserts by verdict key, an
idempotency header). A sink that refuses single records (an HTTP 4xx, say) returns those as
`Refusal`s: the consume loop dead-letters each with stage `sink` and the sink's name, and the
rest of the batch goes on. Nothing is dropped.

Adding a sink is one class with `name`, `write` and `close`, registered as a `vlmod.sinks` entry
point or named in the config as `kind: package.module:Class`; its other keys in the config are
passed to its constructor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from contracts.errors import ModerationError, Stage
from contracts.outcomes import Outcome


class SinkUnavailable(ModerationError):
    """A sink kept failing past its retries; the batch is not committed and is read again."""

    stage = Stage.SINK


@dataclass(frozen=True)
class Refusal:
    """One outcome a sink would not take, by its index in the batch written, and why."""

    index: int
    sink: str
    reason: str


@runtime_checkable
class Sink(Protocol):
    """Writes outcomes durably; see the module docstring for the contract."""

    name: str

    def write(self, outcomes: Sequence[Outcome]) -> Sequence[Refusal]:
        """Write `outcomes`; return once durable, with the ones refused one by one."""
        ...

    def close(self) -> None:
        """Release connections; called once, after the last write."""
        ...
