"""A third-party sink as a user would write one: a class, named in the config by its path."""

from __future__ import annotations

from collections.abc import Sequence

from contracts.outcomes import Outcome
from sinks.base import Refusal

WRITTEN: dict[str, list[str]] = {}  # post ids each named sink took, for the tests to read


class ListSink:
    """Keeps the post ids of what it is given; refuses the posts in `refuse`; `down` raises,
    as do its first `failures` writes."""

    def __init__(
        self, name: str = "list", refuse: Sequence[str] = (), down: bool = False, failures: int = 0
    ) -> None:
        self.name = name
        self.refuse = set(refuse)
        self.down = down
        self.failures = failures
        WRITTEN[name] = []

    def write(self, outcomes: Sequence[Outcome]) -> Sequence[Refusal]:
        if self.down or self.failures > 0:
            self.failures -= 1
            raise ConnectionError(f"{self.name}: the store is down")
        refused = []
        for index, outcome in enumerate(outcomes):
            if outcome.post_id in self.refuse:
                refused.append(Refusal(index, self.name, f"{outcome.post_id} is not wanted here"))
            elif outcome.dead_letter is None:
                WRITTEN[self.name].append(str(outcome.post_id))
        return refused

    def close(self) -> None:
        WRITTEN[self.name].append("closed")
