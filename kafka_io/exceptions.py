"""Errors of Kafka I/O; they derive from the project's one base exception."""

from __future__ import annotations

from contracts.errors import ModerationError, Stage


class ProduceFailed(ModerationError):
    """The broker did not acknowledge an output message."""

    stage = Stage.PRODUCE
