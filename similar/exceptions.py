"""Typed errors of `similar`: one base, and Redis failing under the window.

Standard library only, like `operators.exceptions`.
"""

from __future__ import annotations

from contracts.errors import ModerationError, Stage


class SimilarError(ModerationError):
    """Base of every error raised by `similar`."""

    # The window is written where verdicts leave for the review queues, so a failure there is
    # a sink failure; readers (the console) show the reason and carry on without neighbours.
    stage = Stage.SINK


class SimilarUnavailable(SimilarError):
    """The window's Redis could not be reached or failed; the next call tries again."""


class DimsMismatch(SimilarError):
    """A query's vector has other dims than the window's (the model changed under its name?)."""
