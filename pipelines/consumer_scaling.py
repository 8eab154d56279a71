"""How many consumers the group's lag asks for, in the manner of KEDA's Kafka scaler.

One consumer per `pool.lag_per_consumer` messages behind, at least `pool.consumers`, at most
`pool.max_consumers` and the partition count (a consumer past that would own no partition).
Growing is at once: a backlog costs latency every second. Shrinking is one consumer at a time,
only after the lag has asked for fewer for `pool.consumer_downscale_delay_s`: each change makes
the group rebalance, and a lag that dips between two bursts should not cost two rebalances.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kafka_io.lag import GroupLag
    from pipelines.config import PoolSettings

log = logging.getLogger(__name__)


@dataclass
class ConsumerScaling:
    """The consumer count the lag asks for; remembers since when it asked for fewer."""

    fewest: int
    most: int
    lag_per_consumer: int
    downscale_delay_s: float
    fewer_since: float | None = None

    @classmethod
    def of(cls, pool: PoolSettings) -> ConsumerScaling:
        """The scaling `pool` configures (fixed at `consumers` when `max_consumers` is absent)."""
        most = pool.consumers if pool.max_consumers is None else pool.max_consumers
        return cls(pool.consumers, most, pool.lag_per_consumer, pool.consumer_downscale_delay_s)

    def wanted(self, lag: GroupLag) -> int:
        """Consumers for `lag`, within the bounds and the partition count."""
        wanted = math.ceil(lag.lag / self.lag_per_consumer)
        ceiling = min(self.most, max(lag.partitions, self.fewest))
        return max(self.fewest, min(wanted, ceiling))

    def target(self, lag: GroupLag, current: int, now: float) -> int:
        """The consumer count to have now, given `current` and the lag read at `now`."""
        wanted = self.wanted(lag)
        if wanted >= current:
            self.fewer_since = None
            return wanted
        if self.fewer_since is None:
            self.fewer_since = now
        if now - self.fewer_since < self.downscale_delay_s:
            return current
        self.fewer_since = now  # the next one waits a full delay again
        return current - 1


class ConsumerScaler:
    """Reads the lag every `interval_s` and grows or shrinks the group to the target."""

    def __init__(
        self,
        scaling: ConsumerScaling,
        read_lag: Callable[[], GroupLag],
        resize: Callable[[int], None],
        count: Callable[[], int],
        interval_s: float,
        on_stop: Callable[[], None] = lambda: None,
    ) -> None:
        self.scaling = scaling
        self.read_lag = read_lag
        self.resize = resize
        self.count = count
        self.interval_s = interval_s
        self.on_stop = on_stop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="consumer-scaler", daemon=True)

    def start(self) -> None:
        """Begin following the lag."""
        self._thread.start()

    def stop(self) -> None:
        """Stop following the lag; the consumers stay as they are."""
        self._stop.set()
        self._thread.join()
        self.on_stop()

    def step(self, now: float) -> None:
        """One read of the lag and the resize it asks for."""
        lag = self.read_lag()
        current = self.count()
        target = self.scaling.target(lag, current, now)
        if target != current:
            log.info(
                "consumer group %d behind over %d partitions: %d consumers -> %d",
                lag.lag,
                lag.partitions,
                current,
                target,
            )
            self.resize(target)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.step(time.monotonic())
            except Exception as error:  # a lag read that fails leaves the group as it is
                log.warning("consumer scaling skipped a check: %s", error)
