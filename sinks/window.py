"""Best-effort sinks that keep decided posts in a Redis window for later re-checks.

A window (recent image hashes for the banks, recent embeddings for the heads) helps a later
re-check; it is not the post's outcome. A Redis failure is logged with the posts it leaves out
and never holds the batch back: the verdicts are already made.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from contracts.outcomes import Outcome
from sinks.base import Refusal

log = logging.getLogger(__name__)


class Window(Protocol):
    """A Redis window: entries appended in one round trip."""

    def add(self, entries: Sequence[Any]) -> None: ...

    def close(self) -> None: ...


class WindowSink:
    """Adds each outcome's window entry (`entry`, None for none) to the window; never fails
    the batch. Subclasses name themselves and what a post left out will miss."""

    name: str
    left_out_misses: str  # what a post kept out of the window misses, for the log

    def __init__(self, store: Window) -> None:
        self.store = store
        self.left_out = 0  # posts a Redis failure kept out of the window

    @staticmethod
    def entry(outcome: Outcome) -> Any | None:
        """The window entry of a decided post, or None when it leaves none."""
        raise NotImplementedError

    def write(self, outcomes: Sequence[Outcome]) -> Sequence[Refusal]:
        """Append the entries of `outcomes`; a failure is logged, counted, not raised."""
        entries = [entry for outcome in outcomes if (entry := self.entry(outcome))]
        try:
            self.store.add(entries)
        except Exception as error:  # the window is an aid: the batch's verdicts stand
            self.left_out += len(entries)
            log.warning(
                "%s window: %d post(s) not kept (%s); %s (%d so far)",
                self.name,
                len(entries),
                error,
                self.left_out_misses,
                self.left_out,
            )
        return []

    def close(self) -> None:
        """Release Redis."""
        self.store.close()
