"""Message bytes to a Post: parse, bound, normalize and validate untrusted input.

What a policy sees is what the engine can represent, and what it cost is bounded:
- JSON nested deeper than `PostLimits.max_depth` fails at `validate` (Python's own parser gives
  up near 1,000 levels; that fails at `validate` too, never as a crash);
- lone UTF-16 surrogates (valid JSON escapes such as `\\ud800`, but not text) become U+FFFD;
- invisible format characters are removed from `text`, and its whitespace runs longer than
  `LONG_WHITESPACE` become one character, so that padding cannot push words past the cap;
- `text` still past `PostLimits.max_text_chars` is then cut to that length (`truncated`).
Each change is returned as an `InputChange`, and verdicts carry them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from contracts.errors import PostDecodeError, PostValidationError
from contracts.records import (
    DEFAULT_MAX_IMAGES,
    InputChange,
    InputChangeKind,
    Post,
    describe_validation_error,
)

_SURROGATE = re.compile("[\ud800-\udfff]")
# Format characters that draw nothing but split a word for a regex ("rep\u200blica") or pad a
# post past the cap; removed from `text` whatever its length:
# - U+00AD soft hyphen, U+034F combining grapheme joiner, U+180E Mongolian vowel separator,
#   U+200B-U+200D zero-width space, non-joiner and joiner, U+2060-U+2064 word joiner and
#   invisible operators, U+206A-U+206F deprecated format controls, U+FEFF (a BOM);
# - bidi controls: the marks U+061C, U+200E, U+200F, the embeddings and overrides U+202A-U+202E
#   and the isolates U+2066-U+2069. They change only how text is drawn, never the order of the
#   characters that rules match, and an override can show a reviewer words the rules never
#   read; without them the reviewer sees the text in the order the rules read it.
# The cost: emoji joined with U+200D show as their parts, and Persian or Indic words lose a
# joiner that only changed their shaping. Tag characters (flag sequences) and blank-looking
# letters (U+3164) stay: a pad of them still reaches the cap, and cut text is never allowed
# unjudged (`policies.truncation`).
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]"
)
# Only runs longer than this collapse: shorter ones are what a reader sees as layout (a blank
# line, an indent, aligned columns) and rules and reviewers keep them; a pad is one long run.
LONG_WHITESPACE = 16
_LONG_RUN = re.compile(rf"\s{{{LONG_WHITESPACE + 1},}}")
_LINE_BREAK = re.compile("[\n\v\f\r\x1c-\x1e\x85\u2028\u2029]")


@dataclass(frozen=True)
class PostLimits:
    """Bounds on one post's input; `pipelines.config.PostSettings` sets them."""

    max_images: int = DEFAULT_MAX_IMAGES
    max_text_chars: int = 20_000
    max_depth: int = 32


@dataclass(frozen=True)
class DecodedPost:
    """A valid post and what was changed in it to make it judgeable."""

    post: Post
    changes: tuple[InputChange, ...] = ()

    @property
    def truncated(self) -> bool:
        """True when the text was cut at `max_text_chars`; policies read it as `post.truncated`."""
        return any(
            change.change is InputChangeKind.TRUNCATED and change.field == "text"
            for change in self.changes
        )


def decode_post(raw: bytes, *, limits: PostLimits | None = None) -> DecodedPost:
    """Parse Kafka message bytes into a Post, or raise a decode/validate error with the reason."""
    limits = limits or PostLimits()
    obj = _parse(raw, limits)
    if not isinstance(obj, dict):
        raise PostDecodeError(f"expected a JSON object, got {type(obj).__name__}")
    check_depth(obj, limits.max_depth)
    obj, changes = replace_surrogates(obj)
    changes += normalize_text(obj)
    changes += _cap_text(obj, limits.max_text_chars)
    try:
        post = Post.model_validate(obj, context={"max_images": limits.max_images})
    except ValidationError as exc:
        raise PostValidationError(describe_validation_error(exc)) from exc
    return DecodedPost(post, tuple(changes))


def _parse(raw: bytes, limits: PostLimits) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:
        raise PostValidationError(
            f"JSON nested too deep to read; the limit is {limits.max_depth} levels"
        ) from None
    except UnicodeDecodeError as exc:
        raise PostDecodeError(f"not UTF-8: byte 0x{raw[exc.start]:02x} at {exc.start}") from None
    except ValueError as exc:  # JSONDecodeError, and numbers too long to convert
        raise PostDecodeError(f"not JSON: {exc}") from None


def check_depth(obj: Any, max_depth: int) -> None:
    """Raise PostValidationError when containers nest deeper than `max_depth` (iterative)."""
    stack: list[tuple[Any, int, str]] = [(obj, 1, "")]
    while stack:
        value, depth, path = stack.pop()
        if depth > max_depth:
            where = f" at {path}" if path else ""
            raise PostValidationError(
                f"JSON nested more than {max_depth} levels deep{where}; the limit is "
                f"{max_depth} (posts.max_depth)"
            )
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1, f"{path}.{key}" if path else str(key)))


def replace_surrogates(obj: Any) -> tuple[Any, list[InputChange]]:
    """`obj` with every lone surrogate in keys and strings replaced by U+FFFD, and where."""
    changes: list[InputChange] = []
    return _clean(obj, "", changes), changes


def _clean(value: Any, path: str, changes: list[InputChange]) -> Any:
    # Depth is already bounded by check_depth, so recursion here is safe.
    if isinstance(value, str):
        return _clean_str(value, path, changes)
    if isinstance(value, list):
        return [_clean(item, f"{path}.{i}", changes) for i, item in enumerate(value)]
    if isinstance(value, dict):
        cleaned = {}
        for key, item in value.items():
            name = _clean_str(key, f"{path}.{key}" if path else key, changes)
            cleaned[name] = _clean(item, f"{path}.{name}" if path else name, changes)
        return cleaned
    return value


def _clean_str(text: str, path: str, changes: list[InputChange]) -> str:
    if text.isascii():  # O(1) in CPython: the common case costs nothing
        return text
    fixed, count = _SURROGATE.subn("\ufffd", text)
    if count:
        where = _SURROGATE.sub("\ufffd", path) or "(post)"
        detail = f"{count} lone surrogate{'s' * (count > 1)} replaced with U+FFFD"
        changes.append(
            InputChange(field=where, change=InputChangeKind.SURROGATES_REPLACED, detail=detail)
        )
    return fixed


def normalize_text(obj: dict[str, Any]) -> list[InputChange]:
    """Remove invisible format characters from `obj["text"]` and collapse its long blank runs."""
    text = obj.get("text")
    if not isinstance(text, str):
        return []
    changes = []
    if not text.isascii():  # every invisible character is outside ASCII
        text, count = _INVISIBLE.subn("", text)
        if count:
            detail = f"{count:,} invisible format character{'s' * (count > 1)} removed"
            changes.append(_text_change(InputChangeKind.INVISIBLES_REMOVED, detail))
    text, runs = collapse_whitespace(text)
    if runs:
        detail = (
            f"{len(runs):,} whitespace run{'s' * (len(runs) > 1)} of more than "
            f"{LONG_WHITESPACE} characters ({sum(runs):,} in all) made one character each"
        )
        changes.append(_text_change(InputChangeKind.WHITESPACE_COLLAPSED, detail))
    obj["text"] = text
    return changes


def collapse_whitespace(text: str) -> tuple[str, list[int]]:
    """`text` with each whitespace run past LONG_WHITESPACE as one character; the runs' lengths."""
    runs: list[int] = []

    # A run that broke a line still breaks it: `^`/`$` rules and reviewers keep the lines apart.

    def one_character(match: re.Match[str]) -> str:
        runs.append(len(match.group()))
        return "\n" if _LINE_BREAK.search(match.group()) else " "

    return _LONG_RUN.sub(one_character, text), runs


def _text_change(kind: InputChangeKind, detail: str) -> InputChange:
    return InputChange(field="text", change=kind, detail=detail)


def _cap_text(obj: dict[str, Any], max_chars: int) -> list[InputChange]:
    text = obj.get("text")
    if not isinstance(text, str) or len(text) <= max_chars:
        return []
    obj["text"] = text[:max_chars]
    detail = f"cut to {max_chars:,} of {len(text):,} characters (posts.max_text_chars)"
    return [_text_change(InputChangeKind.TRUNCATED, detail)]
