"""Errors of Kafka I/O; they derive from the project's one base exception."""

from __future__ import annotations

from contracts.errors import ModerationError, Stage


class ProduceFailed(ModerationError):
    """The broker did not acknowledge an output message.

    `outage` says the broker (or the way to it) failed, not the message: a timeout, a lost
    connection, a leader that moved. The same message is taken once the broker is back. When
    False, the broker refused the message itself (too large, invalid), and so it will again.
    """

    stage = Stage.PRODUCE

    def __init__(self, message: str, *, outage: bool = True) -> None:
        super().__init__(message)
        self.outage = outage
