"""A producer defined by the tests: registered in one line in process, or by pipeline config."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from contracts.producers import Ask, Cost, Input, Placement, ProducerJob, Variable


class ShoutSignals:
    """`signals.shout: true`: the share of the text's letters in capitals."""

    name = "shout"
    variables = (Variable("shout", "double"),)
    inputs = frozenset({Input.TEXT})
    placement = Placement.CONSUMER
    cost = Cost.TRIVIAL
    version = "1"
    config = bool
    after: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.seen: list[str] = []  # post ids, in the order they were computed

    def asks(self, value: bool) -> list[Ask]:
        return [Ask("shout", None, "share")] if value else []

    def compute(self, jobs: Sequence[ProducerJob]) -> list[Mapping[Hashable, Any] | Exception]:
        shares = []
        for job in jobs:
            self.seen.append(job.post.id)
            letters = [c for c in job.post.text or "" if c.isalpha()]
            shares.append({"share": sum(c.isupper() for c in letters) / max(1, len(letters))})
        return shares
