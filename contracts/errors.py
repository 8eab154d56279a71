"""The project's base exception and the pipeline stages errors belong to.

Standard library only: `operators` imports this on GPU boxes that have no pydantic.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """Where in the pipeline a post failed; dead letters carry it."""

    DECODE = "decode"
    VALIDATE = "validate"
    FETCH_IMAGE = "fetch-image"
    INFER = "infer"
    POLICY = "policy"
    ROUTE = "route"
    PRODUCE = "produce"
    SINK = "sink"


class ModerationError(Exception):
    """Base of every error the project raises on purpose: a stage and a human reason."""

    stage: Stage = Stage.VALIDATE

    def __init__(self, reason: str, *, stage: Stage | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if stage is not None:
            self.stage = stage

    @property
    def error_type(self) -> str:
        """The class name, as written into dead letters."""
        return type(self).__name__


class PostDecodeError(ModerationError):
    """The message bytes are not a JSON object."""

    stage = Stage.DECODE


class PostValidationError(ModerationError):
    """The JSON object is not a valid post; the reason names each bad field."""

    stage = Stage.VALIDATE


class ServiceUnavailable(ModerationError):
    """A service the pipeline needs (Kafka, Redis, PostgreSQL, Ray) could not be started or
    reached."""

    stage = Stage.PRODUCE


class ConfigInvalid(ModerationError):
    """A settings file is wrong; the reason names the file and field."""

    stage = Stage.VALIDATE
