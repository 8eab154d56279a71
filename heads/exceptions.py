"""What the heads package raises."""

from __future__ import annotations

from contracts.errors import ModerationError


class HeadError(ModerationError):
    """A head could not be trained, stored or found; the reason says which and why."""


class TrainingRefused(HeadError):
    """The examples cannot train a head (too few of a class, bad vectors)."""


class HeadNotFound(HeadError):
    """No head (or no such version of it) in the store."""
