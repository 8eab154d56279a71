"""Safe YAML reading with a position for every key and value.

We build plain data from ruamel's event stream ourselves instead of using a constructor, because
that is the only way to (1) report every duplicate key instead of stopping at the first, (2) know
where each alias is used, so alias expansion can be bounded at its position (billion laughs), and
(3) refuse every non-data tag (`!!python/object`, custom tags) rather than silently dropping it.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml import events as ev
from ruamel.yaml.error import MarkedYAMLError

from policies.exceptions import PolicyInvalid, Problem

Path = tuple[str | int, ...]

_SAFE_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null")}
_SAFE_TAGS |= {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "!"}
_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_NULLS = {"", "~", "null", "Null", "NULL"}
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


@dataclass(frozen=True)
class YamlLimits:
    """Bounds on what a policy file may cost to read."""

    max_bytes: int = 1_000_000
    max_nodes: int = 20_000
    max_depth: int = 40


@dataclass(frozen=True)
class Mark:
    """A 1-based line and column, plus the 0-based character index it came from."""

    line: int
    col: int
    index: int = 0


@dataclass
class YamlDocument:
    """Plain data read from one file, with where each key and value sits."""

    file: str
    text: str
    data: Any = None
    value_marks: dict[Path, Mark] = field(default_factory=dict)
    key_marks: dict[Path, Mark] = field(default_factory=dict)
    styles: dict[Path, str | None] = field(default_factory=dict)

    def where(self, path: Path) -> Mark:
        """Where the value at `path` starts, or its nearest existing ancestor."""
        for end in range(len(path), -1, -1):
            mark = self.value_marks.get(path[:end])
            if mark is not None:
                return mark
        return Mark(1, 1)

    def key_where(self, path: Path) -> Mark:
        """Where the key naming `path` is written, falling back to the value."""
        return self.key_marks.get(path) or self.where(path)

    def problem(self, mark: Mark, message: str) -> Problem:
        """A problem in this file at `mark`."""
        return Problem(self.file, mark.line, mark.col, message)

    def inside_scalar(self, path: Path, offset: int) -> Mark:
        """The file position of character `offset` of the string value at `path`."""
        start = self.value_marks.get(path)
        value = _get(self.data, path)
        if start is None or not isinstance(value, str):
            return self.where(path)
        index = _align(self.text, start.index, self.styles.get(path), value, offset)
        return self._mark_at(index)

    def _mark_at(self, index: int) -> Mark:
        starts = [0] + [m.end() for m in re.finditer("\n", self.text)]
        line = bisect.bisect_right(starts, index) - 1
        return Mark(line + 1, index - starts[line] + 1, index)


def _get(data: Any, path: Path) -> Any:
    for step in path:
        try:
            data = data[step]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _align(text: str, start: int, style: str | None, value: str, offset: int) -> int:
    """Map an offset in a scalar's value to an index in the source text.

    Folding, indentation and quoting only change whitespace and quote/escape characters, so
    matching the value's non-blank characters in order against the source is exact for plain
    and block scalars and close for quoted ones.
    """
    src = start
    if style in ("|", ">"):
        src = text.find("\n", start) + 1 or len(text)
    elif style in ("'", '"'):
        src += 1
    for position, char in enumerate(value[: offset + 1]):
        if char.isspace():
            continue
        found = text.find(char, src)
        if found < 0:
            return src
        if position == offset:
            return found
        src = found + 1
    return src


class _Builder:
    """Turns one document's events into plain data, collecting problems as it goes."""

    def __init__(self, doc: YamlDocument, limits: YamlLimits) -> None:
        self.doc = doc
        self.limits = limits
        self.problems: list[Problem] = []
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.nodes = 0

    def mark(self, event: ev.Event) -> Mark:
        start = event.start_mark
        return Mark(start.line + 1, start.column + 1, start.index)

    def node(self, event: ev.Event, stream: Iterator[ev.Event], path: Path, depth: int) -> Any:
        """Build the node that starts with `event`; return its value."""
        if depth > self.limits.max_depth:
            raise _Abort(self.mark(event), f"YAML nests deeper than {self.limits.max_depth} levels")
        self.doc.value_marks[path] = self.mark(event)
        if isinstance(event, ev.AliasEvent):
            return self.alias(event)
        self.check_tag(event)
        before = self.nodes
        self.count(event, 1)
        if isinstance(event, ev.ScalarEvent):
            value = self.scalar(event)
            self.doc.styles[path] = event.style
        elif isinstance(event, ev.SequenceStartEvent):
            value = self.sequence(stream, path, depth)
        elif isinstance(event, ev.MappingStartEvent):
            value = self.mapping(stream, path, depth)
        else:
            raise _Abort(self.mark(event), f"unexpected YAML event {type(event).__name__}")
        if event.anchor:
            self.anchors[str(event.anchor)] = (value, self.nodes - before)
        return value

    def count(self, event: ev.Event, nodes: int) -> None:
        self.nodes += nodes
        if self.nodes > self.limits.max_nodes:
            raise _Abort(
                self.mark(event),
                f"YAML expands to more than {self.limits.max_nodes} nodes"
                " (aliases multiplying data: a YAML bomb?)",
            )

    def alias(self, event: ev.AliasEvent) -> Any:
        name = str(event.anchor)
        if name not in self.anchors:
            raise _Abort(self.mark(event), f"unknown alias *{name}")
        value, cost = self.anchors[name]
        self.count(event, cost)
        return value

    def check_tag(self, event: ev.Event) -> None:
        tag = getattr(event, "tag", None)
        if tag is not None and str(tag) not in _SAFE_TAGS:
            self.problems.append(
                self.doc.problem(
                    self.mark(event), f"tag {_short_tag(tag)} is not allowed; use plain YAML data"
                )
            )

    def scalar(self, event: ev.ScalarEvent) -> Any:
        # ruamel's round-trip parser marks folded line breaks with BEL; they are plain spaces.
        text = str(event.value).replace("\a", "")
        if event.style is not None or str(event.tag).endswith(":str"):
            return text
        return resolve_plain(text)

    def sequence(self, stream: Iterator[ev.Event], path: Path, depth: int) -> list[Any]:
        items: list[Any] = []
        for event in stream:
            if isinstance(event, ev.SequenceEndEvent):
                return items
            items.append(self.node(event, stream, (*path, len(items)), depth + 1))
        return items

    def mapping(self, stream: Iterator[ev.Event], path: Path, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, Mark] = {}
        for event in stream:
            if isinstance(event, ev.MappingEndEvent):
                return result
            key_mark = self.mark(event)
            if not isinstance(event, ev.ScalarEvent):
                raise _Abort(key_mark, "mapping keys must be plain strings")
            key = str(event.value)
            self.count(event, 1)
            value_path = (*path, key)
            if key in first_seen:
                seen = first_seen[key]
                self.problems.append(
                    self.doc.problem(key_mark, f"duplicate key {key!r} (first at line {seen.line})")
                )
                self.node(next(stream), stream, (*path, f"\0dup:{key}"), depth + 1)
                continue
            first_seen[key] = key_mark
            self.doc.key_marks[value_path] = key_mark
            result[key] = self.node(next(stream), stream, value_path, depth + 1)
        return result


class _Abort(Exception):
    def __init__(self, mark: Mark, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


def _short_tag(tag: object) -> str:
    return str(tag).replace("tag:yaml.org,2002:", "!!")


def resolve_plain(text: str) -> Any:
    """YAML 1.2 core-schema type of an unquoted scalar."""
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def read_yaml(file: str, raw: bytes, limits: YamlLimits | None = None) -> YamlDocument:
    """Read one YAML document as plain data, or raise PolicyInvalid listing every problem."""
    limits = limits or YamlLimits()
    if len(raw) > limits.max_bytes:
        raise PolicyInvalid(
            [Problem(file, 1, 1, f"file is {len(raw)} bytes, over the {limits.max_bytes} limit")]
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PolicyInvalid([Problem(file, 1, 1, f"file is not UTF-8: {exc.reason}")]) from exc
    doc = YamlDocument(file=file, text=text)
    builder = _Builder(doc, limits)
    try:
        _build(builder, YAML(typ="rt").parse(text))
    except _Abort as exc:
        raise PolicyInvalid([*builder.problems, doc.problem(exc.mark, exc.message)]) from None
    except MarkedYAMLError as exc:
        raise PolicyInvalid([*builder.problems, _syntax_problem(file, exc)]) from None
    if builder.problems:
        raise PolicyInvalid(builder.problems)
    return doc


def _build(builder: _Builder, stream: Iterator[ev.Event]) -> None:
    documents = 0
    for event in stream:
        if isinstance(event, ev.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise _Abort(builder.mark(event), "a policy file holds one YAML document")
        elif not isinstance(event, ev.StreamStartEvent | ev.StreamEndEvent | ev.DocumentEndEvent):
            builder.doc.data = builder.node(event, stream, (), 0)


def _syntax_problem(file: str, exc: MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    reason = " ".join(str(part) for part in (exc.context, exc.problem) if part)
    return Problem(file, line, col, f"YAML syntax error: {reason}")
