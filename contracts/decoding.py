"""Message bytes to a Post: parse, bound, normalize and validate untrusted input.

What a policy sees is what the engine can represent, and what it cost is bounded:
- JSON nested deeper than `PostLimits.max_depth` fails at `validate` (Python's own parser gives
  up near 1,000 levels; that fails at `validate` too, never as a crash);
- lone UTF-16 surrogates (valid JSON escapes such as `\\ud800`, but not text) become U+FFFD;
- `text` past `PostLimits.max_text_chars` is cut to that length.
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


def decode_post(raw: bytes, *, limits: PostLimits | None = None) -> DecodedPost:
    """Parse Kafka message bytes into a Post, or raise a decode/validate error with the reason."""
    limits = limits or PostLimits()
    obj = _parse(raw, limits)
    if not isinstance(obj, dict):
        raise PostDecodeError(f"expected a JSON object, got {type(obj).__name__}")
    check_depth(obj, limits.max_depth)
    obj, changes = replace_surrogates(obj)
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


def _cap_text(obj: dict[str, Any], max_chars: int) -> list[InputChange]:
    text = obj.get("text")
    if not isinstance(text, str) or len(text) <= max_chars:
        return []
    obj["text"] = text[:max_chars]
    detail = f"cut to {max_chars:,} of {len(text):,} characters (posts.max_text_chars)"
    return [InputChange(field="text", change=InputChangeKind.TRUNCATED, detail=detail)]
