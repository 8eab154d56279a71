"""The consumer actor's garbage-collector thresholds, by whether the consumer is behind.

Each batch allocates many short-lived objects (pydantic records, dicts, journeys), so Python's
first-generation collection (every 700 net allocations) runs often: in-process about a tenth of
a post's CPU (docs/benchmarks.md). Rarer collections save most of it but make each one longer,
and at a modest rate a long one lands on some post's latency. So the actor collects rarely while
it is behind (its polls hand out full batches: throughput is what counts) and as before once it
has caught up (a poll came back short: latency is what counts).
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Thresholds = tuple[int, int, int]


@dataclass
class CollectorPace:
    """Sets the process's collector thresholds to `behind` or `caught_up` as the state changes.

    >>> pace = CollectorPace(caught_up=gc.get_threshold(), behind=(50000, 50, 100))
    >>> pace.set_behind(True)   # a full poll: collect rarely
    >>> pace.set_behind(False)  # a short one: as before
    """

    caught_up: Thresholds
    behind: Thresholds | None
    _is_behind: bool = field(default=False, init=False)

    def set_behind(self, behind: bool) -> None:
        """The consumer is behind (True) or has caught up (False); thresholds follow."""
        if self.behind is None or behind == self._is_behind:
            return
        self._is_behind = behind
        gc.set_threshold(*(self.behind if behind else self.caught_up))


def tune_collector(
    thresholds: Thresholds | None, behind: Thresholds | None = None
) -> CollectorPace:
    """Set this process's thresholds (`pool.consumer_gc_thresholds`, if given); the pace that
    switches to `behind` (`pool.consumer_gc_thresholds_behind`) while the consumer is behind."""
    if thresholds is not None:
        gc.set_threshold(*thresholds)
    caught_up = gc.get_threshold()
    log.info("garbage-collector thresholds: %s, while behind: %s", caught_up, behind or caught_up)
    return CollectorPace(caught_up=caught_up, behind=behind)
