"""Python answers for the simple shapes of CEL term, given only where CEL would answer the same.

Running a compiled term is cheap; building its CEL environment (the post, each signal map) is
not. The policy engine (`CompiledPolicy.run_rules`) and replay (`replay.fast`) take these
answers first and build the environment only for a term that needs CEL.

A term is parsed from its tokens into closures over one post (a `Row`):
comparisons of signals, post fields, `text` and literals; `&&`, `||`, `!` and parentheses;
`has()` on post fields; `size()`; string `contains`, `startsWith`, `endsWith` and `matches` (the
policy's own precompiled matcher). Every closure gives True, False, a value, or SLOW where it
cannot be sure of CEL's answer: a comparison of two different types (but an int with a double,
which CEL compares as numbers while the int fits a double exactly) or with NaN (CEL refuses to
order it), a missing map key or a non-map (CEL's error), a non-bool where a bool is needed.
`&&` and `||` go left to right and give SLOW at the first unknown operand before a deciding
one, so they agree with CEL whether or not it absorbs errors on the right.
Anything the grammar does not cover gives no answer at all: CEL runs the term.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

from policies.celscan import Token, string_value, tokenize
from policies.expressions import SignalRef

SLOW = object()  # CEL must answer
RecordKey = tuple[str, str]  # (producer, request key), as replay keys recorded values
Key = TypeVar("Key", bound=Hashable)
Answer = Callable[["Row"], Any]  # True, False, a value, or SLOW
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_FLIPPED = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==", "!=": "!="}
_INT64 = (-(2**63), 2**63 - 1)
_EXACT_INT = 2**53  # the ints a double holds exactly
_ORDERED = frozenset({float, int})  # types whose <, > CEL and Python agree on, within a type
_EQUATABLE = frozenset({float, int, str, bool})
_STRING_CALLS: dict[str, Callable[[str, str], bool]] = {
    "contains": lambda s, x: x in s,
    "startsWith": str.startswith,
    "endsWith": str.endswith,
}


class Row(Protocol):
    """What a term reads of one post: its signal values under the keys `answer_for` was given
    (`policies.compiled.TermRow`, `replay.fast.Row`)."""

    @property
    def computed(self) -> Mapping[Any, Any]:
        """Signal values by key."""

    post: dict[str, Any]
    text: Any
    truncated: bool


class _Unsupported(Exception):
    """The term has a shape this grammar does not answer."""


def answer_for(
    source: str, keys: Mapping[SignalRef, Hashable], functions: Mapping[str, Any]
) -> tuple[Answer, int] | None:
    """The term's Python answer and its cost (0: arithmetic, 1: scans text), or None."""
    parser = _Parser(tokenize(source), keys, functions)
    try:
        answer = parser.expression()
    except (_Unsupported, IndexError, ValueError):
        return None
    if parser.at < len(parser.tokens):
        return None
    return _as_bool(answer), parser.cost


def guard_for(
    source: str, keys: Mapping[SignalRef, Key]
) -> tuple[Key, Callable[[Any, Any], bool], float] | None:
    """For `<signal> <op> <double>` (either way round): the signal's key, the comparison and
    the number, so that a caller can test a float value inline. None for any other term."""
    tokens = tokenize(source)
    for flipped in (False, True):
        ordered = list(reversed(tokens)) if flipped else tokens
        if len(ordered) < 3 or ordered[-2].text not in _COMPARE:
            continue
        literal, symbol = ordered[-1], ordered[-2].text
        parser = _Parser(tokens[2:] if flipped else tokens[:-2], keys, {})
        try:
            bound = _number(literal)
            ref = parser.signal(parser.take().text)
        except (_Unsupported, IndexError):
            continue
        if parser.at != len(parser.tokens) or type(bound) is not float:
            continue
        return keys[ref], _COMPARE[_FLIPPED[symbol] if flipped else symbol], bound
    return None


def first_guard(
    sources: Iterable[str], keys: Mapping[SignalRef, Key]
) -> tuple[Key, Callable[[Any, Any], bool], float] | None:
    """`guard_for` of the first of a rule's terms (their sources) that has one: where that
    term is false, the rule is not matched whatever its other terms give."""
    for source in sources:
        found = guard_for(source, keys)
        if found is not None:
            return found
    return None


def _as_bool(answer: Answer) -> Answer:
    def boolean(row: Row) -> Any:
        value = answer(row)
        return value if type(value) is bool else SLOW

    return boolean


class _Parser:
    """Recursive descent over one term's tokens, building closures."""

    def __init__(
        self, tokens: list[Token], keys: Mapping[SignalRef, Hashable], functions: Mapping[str, Any]
    ) -> None:
        self.tokens = tokens
        self.keys = keys
        self.functions = functions
        self.at = 0
        self.cost = 0

    def peek(self, ahead: int = 0) -> str:
        index = self.at + ahead
        return self.tokens[index].text if index < len(self.tokens) else ""

    def take(self, text: str | None = None) -> Token:
        token = self.tokens[self.at]
        if text is not None and token.text != text:
            raise _Unsupported(token.text)
        self.at += 1
        return token

    def expression(self) -> Answer:
        return self._chain("||", self.conjunction, True)

    def conjunction(self) -> Answer:
        return self._chain("&&", self.unary, False)

    def _chain(self, symbol: str, part: Callable[[], Answer], decides: bool) -> Answer:
        """`a || b || ...` (decides on True) or `a && b && ...` (decides on False)."""
        parts = [part()]
        while self.peek() == symbol:
            self.take()
            parts.append(part())
        if len(parts) == 1:
            return parts[0]

        def logic(row: Row) -> Any:
            for answer in parts:
                value = answer(row)
                if type(value) is not bool:
                    return SLOW
                if value is decides:
                    return decides
            return not decides

        return logic

    def unary(self) -> Answer:
        if self.peek() == "!":
            self.take()
            inner = self.unary()

            def negate(row: Row) -> Any:
                value = inner(row)
                return (not value) if type(value) is bool else SLOW

            return negate
        return self.comparison()

    def comparison(self) -> Answer:
        left = self.operand()
        symbol = self.peek()
        if symbol not in _COMPARE:
            return left
        self.take()
        right = self.operand()
        compare = _COMPARE[symbol]
        types = _ORDERED if symbol in ("<", "<=", ">", ">=") else _EQUATABLE

        def compared(row: Row) -> Any:
            a, b = left(row), right(row)
            kind = type(a)
            if kind is not type(b):
                return _mixed(compare, a, b)
            if kind not in types:
                return SLOW
            if kind is int and not (_INT64[0] <= a <= _INT64[1] and _INT64[0] <= b <= _INT64[1]):
                return SLOW  # past CEL's int64
            if kind is float and (a != a or b != b):
                return SLOW  # CEL has no order for NaN: `<`, `>` on it are errors
            return compare(a, b)

        return compared

    def operand(self) -> Answer:
        token = self.tokens[self.at]
        if token.text == "(":
            self.take()
            inner = self.expression()
            self.take(")")
            return self.methods(inner)
        if token.text == "-" and self.tokens[self.at + 1].kind == "number":
            self.take()
            value = -_number(self.take())
            return lambda row: value
        if token.kind == "number":
            number = _number(self.take())
            return lambda row: number
        if token.kind == "string" and token.text[:1] in ("'", '"'):
            text = string_value(self.take())
            return self.methods(lambda row: text)
        if token.text in ("true", "false"):
            flag = self.take().text == "true"
            return lambda row: flag
        if token.text == "has":
            return self.presence()
        if token.text == "size":
            self.take()
            self.take("(")
            inner = self.operand()
            self.take(")")
            return _size(inner)
        if token.kind == "ident":
            return self.methods(self.path())
        raise _Unsupported(token.text)

    def path(self) -> Answer:
        """`text`, `post.a.b`, or a signal (`nsfw`, `labels.x`, `banks["x"]`) then fields."""
        root = self.take().text
        if root == "text":
            return lambda row: row.text
        if root == "post":
            fields = self.fields()
            if fields == ["truncated"]:
                return lambda row: row.truncated
            if fields and fields[0] == "truncated":
                raise _Unsupported("post.truncated.*")
            return _walk(lambda row: row.post, fields)
        ref = self.signal(root)
        key = self.keys[ref]
        return _walk(lambda row: row.computed[key], self.fields())

    def signal(self, root: str) -> SignalRef:
        """The signal `root` (and item) names; the item is taken when the variable is keyed."""
        if (root, None) in self.keys:
            return (root, None)
        item = self.field()
        if item is None or (root, item) not in self.keys:
            raise _Unsupported(root)
        return (root, item)

    def field(self) -> str | None:
        """`.name` or `["name"]` next (not a method call), or None."""
        if self.peek() == "." and self.peek(2) != "(":
            self.take()
            token = self.take()
            if token.kind != "ident":
                raise _Unsupported(token.text)
            return token.text
        if self.peek() == "[":
            string = self.tokens[self.at + 1]
            if string.kind == "string" and string.text[:1] in ("'", '"') and self.peek(2) == "]":
                self.at += 3
                return string_value(string)
        return None

    def fields(self) -> list[str]:
        found = []
        while (name := self.field()) is not None:
            found.append(name)
        return found

    def methods(self, target: Answer) -> Answer:
        """`target.contains("x")`, `.startsWith`, `.endsWith`, `.matches`, if one follows."""
        if self.peek() != "." or self.peek(2) != "(":
            return target
        self.take()
        name = self.take().text
        self.take("(")
        literal = self.take()
        self.take(")")
        if literal.kind != "string" or literal.text[:1] not in ("'", '"'):
            raise _Unsupported(literal.text)
        argument = string_value(literal)
        self.cost = 1
        if name == "matches":
            matcher = self._matcher(argument)
            return lambda row: matcher(value) if type(value := target(row)) is str else SLOW
        call = _STRING_CALLS.get(name)
        if call is None:
            raise _Unsupported(name)
        return lambda row: call(value, argument) if type(value := target(row)) is str else SLOW

    def presence(self) -> Answer:
        """`has(post.a.b)`: whether the last field is in the map before it."""
        self.take("has")
        self.take("(")
        self.take("post")
        fields = self.fields()
        self.take(")")
        if not fields or fields[0] == "truncated":
            raise _Unsupported("has")
        parent = _walk(lambda row: row.post, fields[:-1])
        last = fields[-1]

        def present(row: Row) -> Any:
            held = parent(row)
            return last in held if type(held) is dict else SLOW

        return present

    def _matcher(self, pattern: str) -> Any:
        for function in self.functions.values():
            if getattr(function, "pattern", None) == pattern:
                return function
        raise _Unsupported(pattern)


def _mixed(compare: Callable[[Any, Any], bool], a: Any, b: Any) -> Any:
    """An int against a double: CEL compares them as numbers, as Python does, while the int is
    one a double holds exactly; any other pair of types is CEL's to judge."""
    if type(a) is int and type(b) is float:
        whole, double = a, b
    elif type(a) is float and type(b) is int:
        whole, double = b, a
    else:
        return SLOW
    if double != double or not -_EXACT_INT <= whole <= _EXACT_INT:
        return SLOW
    return compare(a, b)


def _number(token: Token) -> float | int:
    """A double or int literal's value; uints and hex are left to CEL."""
    text = token.text
    if token.kind != "number" or text.endswith(("u", "U")) or text.startswith(("0x", "0X")):
        raise _Unsupported(text)
    if any(mark in text for mark in ".eE"):
        return float(text)
    return int(text)


def _walk(start: Answer, fields: list[str]) -> Answer:
    """The value at `fields` under `start`; SLOW where a step is not a map holding the field."""
    if not fields:
        return start

    def walk(row: Row) -> Any:
        value = start(row)
        for name in fields:
            if type(value) is not dict or name not in value:
                return SLOW
            value = value[name]
        return value

    return walk


def _size(inner: Answer) -> Answer:
    def size(row: Row) -> Any:
        value = inner(row)
        return len(value) if type(value) in (str, list, dict) else SLOW

    return size
