"""What a post's decisions read, kept once per post so that a replay can decide it again exactly.

A policy reads three things: the post's fields (`post`, `text`), whether the decoder cut its text
(`post.truncated`), and producer values keyed by `(producer, request)`. A `PostRecord` keeps all
three, with the version of every producer that computed a value. Values are keyed by producer
and request, not by a policy's names for them, so a candidate policy that renames a label or
changes a threshold finds the value its request computes, and one that asks something new
(another prompt, another bank) finds nothing and is told so: a missing value is never read as 0.

Where the history is kept, each post's record travels once: on its first verdict (the verdict
topic and a JSONL export of it), and in the `record` column of the PostgreSQL sink's `posts`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RECORD_VERSION", "PostRecord", "RecordedValue"]

RECORD_VERSION = 1


class RecordedValue(BaseModel):
    """One producer value a policy of the post read (or asked for and could not have)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    producer: str = Field(..., description="The producer (its key under `signals:`).")
    request: str = Field(
        ..., description="The request it computed, as `contracts.producers.request_key` writes it."
    )
    value: Any = Field(None, description="The value; null when `unavailable` says why not.")
    unavailable: str | None = Field(
        None, description="Why the value could not be had (its store was down), if it could not."
    )


class PostRecord(BaseModel):
    """Every input the post's policies read, once per post: enough to decide it again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(RECORD_VERSION, description="Layout version of this record.")
    post: dict[str, Any] = Field(
        ...,
        description="The post as policies read it (`post` in conditions): its fields after "
        "decoding, images by address and type only.",
    )
    truncated: bool = Field(False, description="True when the decoder cut the post's text.")
    values: list[RecordedValue] = Field(
        default_factory=list,
        description="Every producer value computed (or found unavailable) for the post, across "
        "all its policies.",
    )
    versions: dict[str, str] = Field(
        default_factory=dict,
        description="The version of each producer that computed a value (a model producer's "
        "includes the checkpoint and revision).",
    )

    def computed(self) -> dict[tuple[str, str], Any]:
        """Values by (producer, request key); unavailable ones left out."""
        return {(v.producer, v.request): v.value for v in self.values if v.unavailable is None}

    def unavailable(self) -> dict[tuple[str, str], str]:
        """Why each unavailable value could not be had, by (producer, request key)."""
        return {(v.producer, v.request): v.unavailable for v in self.values if v.unavailable}
