"""Errors of the runtime layer; all derive from the project's one base exception."""

from __future__ import annotations

from contracts.errors import ModerationError, Stage


class ServiceUnavailable(ModerationError):
    """A service the pipeline needs (Kafka, Redis, Ray) could not be started or reached."""

    stage = Stage.PRODUCE


class ProduceFailed(ModerationError):
    """The broker did not acknowledge an output message."""

    stage = Stage.PRODUCE


class ReplicaStartFailed(ModerationError):
    """The model replica pool could not start; the reason is the replica's own error."""

    stage = Stage.INFER


class ConfigInvalid(ModerationError):
    """A pipeline config file is wrong; the reason names the file and field."""

    stage = Stage.VALIDATE
