"""Errors of the runtime layer; all derive from the project's one base exception."""

from __future__ import annotations

from contracts.errors import ModerationError, Stage


class ReplicaStartFailed(ModerationError):
    """The model replica pool could not start; the reason is the replica's own error."""

    stage = Stage.INFER
