"""The lean history reader: of each recorded verdict, only what a replay reads, typed.

A history line is a whole `Verdict` (about 5 KB with its record), and pydantic validating all of
it cost ten times the replay. Replay reads the post id, key, action, policy, matched rule ids,
mode, time and record; `msgspec` decodes those into the structs here (checking their types as
`Verdict` does) and skips the rest unread. A line the lean decoder refuses goes through the
full `Verdict` path (`review.report_io`), so a bad record is skipped with exactly that path's
reason, and a record pydantic accepts only by coercion (`"version": 5.0`, a lone surrogate)
is read as pydantic reads it. The depth limit applies to what is kept (the post, each value):
fields replay does not read are skipped unread, so neither their nesting nor their types nor
unknown keys make a line bad. `RecordedPost.full` validates a whole verdict where one is needed
(a replay-QA task carries the recorded verdict's models and producers).

The protocols name what replay reads of a verdict and a record, so that pydantic `Verdict`s
(the PostgreSQL sink's, tests') and lean ones replay alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec

from contracts.history import RECORD_VERSION, PostRecord
from contracts.records import Action, Verdict, utc_now
from review.report_io import RawRecord, RecordLimits, RecordTooDeep, record_object, verdict_of

# Past a record's own levels (verdict 1, record 2, post 3), a post's fields nest this much more.
POST_LEVELS = 2
VALUE_LEVELS = 4  # verdict 1, record 2, values 3, a value's object 4: its value 5
LEAN_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)


class PolicyView(Protocol):
    """The deciding policy, as replay reads it."""

    @property
    def id(self) -> str: ...
    @property
    def version(self) -> int | str: ...
    @property
    def sha256(self) -> str: ...


class RuleView(Protocol):
    """A matched rule, as replay reads it: its id."""

    @property
    def id(self) -> str: ...


class ValueView(Protocol):
    """One recorded producer value."""

    @property
    def producer(self) -> str: ...
    @property
    def request(self) -> str: ...
    @property
    def value(self) -> Any: ...
    @property
    def unavailable(self) -> str | None: ...


class RecordView(Protocol):
    """A post's record: a `PostRecord` or a `LeanRecord`."""

    @property
    def post(self) -> dict[str, Any]: ...
    @property
    def truncated(self) -> bool: ...
    @property
    def values(self) -> Sequence[ValueView]: ...
    def computed(self) -> dict[tuple[str, str], Any]: ...
    def unavailable(self) -> dict[tuple[str, str], str]: ...


class VerdictView(Protocol):
    """A recorded verdict, as replay reads it: a `Verdict` or a `LeanVerdict`."""

    @property
    def post_id(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def action(self) -> Action: ...
    @property
    def policy(self) -> PolicyView: ...
    @property
    def matched_rules(self) -> Sequence[RuleView]: ...
    @property
    def shadow(self) -> bool: ...
    @property
    def processed_at(self) -> datetime: ...
    @property
    def record(self) -> RecordView | None: ...


# gc=False: these hold no reference cycles, and a history of a million posts holds tens of
# millions of them; tracking them made the collector's passes cost more than decoding.
class LeanPolicy(msgspec.Struct, frozen=True, gc=False):
    """`PolicyRef`'s fields."""

    id: str
    version: int | str
    sha256: str


class LeanRule(msgspec.Struct, frozen=True, gc=False):
    """A matched rule's id (its evidence is skipped)."""

    id: str


class LeanValue(msgspec.Struct, frozen=True, gc=False):
    """`RecordedValue`'s fields."""

    producer: str
    request: str
    value: Any = None
    unavailable: str | None = None


class LeanRecord(msgspec.Struct, frozen=True, gc=False):
    """`PostRecord`'s fields (all of them, so that `post_record` gives the same record)."""

    post: dict[str, Any]
    version: int = RECORD_VERSION
    truncated: bool = False
    values: tuple[LeanValue, ...] = ()
    versions: dict[str, str] = {}

    def computed(self) -> dict[tuple[str, str], Any]:
        """Values by (producer, request key); unavailable ones left out."""
        return {(v.producer, v.request): v.value for v in self.values if v.unavailable is None}

    def unavailable(self) -> dict[tuple[str, str], str]:
        """Why each unavailable value could not be had, by (producer, request key)."""
        return {(v.producer, v.request): v.unavailable for v in self.values if v.unavailable}


class LeanVerdict(msgspec.Struct, frozen=True, gc=False):
    """The fields of a `Verdict` that replay reads, with `Verdict`'s types and defaults."""

    post_id: str
    key: str
    action: Action
    policy: LeanPolicy
    matched_rules: tuple[LeanRule, ...] = ()
    shadow: bool = False
    processed_at: datetime = msgspec.field(default_factory=utc_now)
    record: LeanRecord | None = None


class LeanShadow(msgspec.Struct, frozen=True, gc=False):
    """A `ShadowVerdict` line's verdict (its diff is skipped)."""

    verdict: LeanVerdict


_VERDICT = msgspec.json.Decoder(LeanVerdict).decode
_SHADOW = msgspec.json.Decoder(LeanShadow).decode


def lean_verdict(raw: RawRecord, limits: RecordLimits) -> VerdictView:
    """What replay reads of the verdict in `raw`, or the reference path's BadRecord or
    ValidationError saying why it is no verdict."""
    body = raw.value
    if body and raw.size <= limits.max_bytes:
        try:
            verdict = _VERDICT(body)
        except LEAN_ERRORS:
            pass
        else:
            # Only a record holds what nests (the post, values), and nothing nests deeper than
            # the line has opening brackets: most records have fewer than the limit.
            if verdict.record is None or (body.count(b"{") + body.count(b"[") <= limits.max_depth):
                return verdict
            return _within(verdict, limits.max_depth)
        if b'"verdict"' in body:
            try:
                shadow = _SHADOW(body).verdict
            except LEAN_ERRORS:
                pass
            else:  # as verdict_of reads the shadow topic: never an active verdict
                verdict = msgspec.structs.replace(shadow, shadow=True)
                return _within(verdict, limits.max_depth, wrapped=1)
    return verdict_of(record_object(raw, limits))


def _within(verdict: LeanVerdict, max_depth: int, wrapped: int = 0) -> LeanVerdict:
    """`verdict`, unless its post or a value nests deeper than `max_depth` levels counted from
    the line (`wrapped`: levels above the verdict, 1 in a ShadowVerdict)."""
    record = verdict.record
    if record is None:
        return verdict
    if _depth(record.post) + POST_LEVELS + wrapped > max_depth:
        raise RecordTooDeep(max_depth)
    for value in record.values:
        inner = value.value
        if (type(inner) is dict or type(inner) is list) and (
            _depth(inner) + VALUE_LEVELS + wrapped > max_depth
        ):
            raise RecordTooDeep(max_depth)
    return verdict


def _depth(value: Any) -> int:
    """How many container levels `value` has (1 for a flat dict), iteratively."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, level + 1))
    return deepest


def post_record(record: RecordView) -> PostRecord:
    """The `PostRecord` of a record (a lean one validated whole)."""
    if isinstance(record, PostRecord):
        return record
    return PostRecord.model_validate(msgspec.to_builtins(record))


def full_verdict(line: bytes, limits: RecordLimits | None = None) -> Verdict:
    """The whole `Verdict` of a history line (ValidationError or BadRecord when it is none)."""
    return verdict_of(record_object(RawRecord("", line, len(line)), limits or RecordLimits()))
