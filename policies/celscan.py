"""Static facts about a CEL condition, read from its tokens: which signals it reads, where.

The CEL library compiles and runs expressions but exposes no syntax tree with positions, and we
need positions (to point at an undeclared label), field names under `labels`/`answers` (to plan
signals) and the top-level `&&` terms (to test cheap terms first). A tokenizer is enough for
all three; it never evaluates anything, so it cannot change what a condition means.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<string>(?:[rR][bB]?|[bB][rR]?)?(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''
        |"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'))
  | (?P<number>0[xX][0-9a-fA-F]+[uU]?|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?[uU]?)
  | (?P<ident>[_a-zA-Z][_a-zA-Z0-9]*)
  | (?P<punct>&&|\|\||==|!=|<=|>=|[-+*/%<>!?:.,\[\](){}])
  | (?P<other>.)
    """,
    re.VERBOSE,
)
COMPREHENSIONS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_OPEN = {"(": ")", "[": "]", "{": "}"}


@dataclass(frozen=True)
class Token:
    """One lexical token of a condition and its character offset."""

    kind: str
    text: str
    offset: int


@dataclass(frozen=True)
class Reference:
    """A read of `root.name` (name empty for the root itself, `*` for a dynamic key)."""

    root: str
    name: str
    offset: int


@dataclass
class Facts:
    """What a condition reads and calls, with offsets into its source."""

    references: list[Reference] = field(default_factory=list)
    reads: list[tuple[str, ...]] = field(default_factory=list)
    bound: set[str] = field(default_factory=set)
    comprehensions: list[tuple[str, int, int]] = field(default_factory=list)
    calls: list[tuple[str, int]] = field(default_factory=list)
    patterns: list[Token] = field(default_factory=list)
    non_literal_patterns: list[int] = field(default_factory=list)
    conjuncts: list[tuple[int, int]] = field(default_factory=list)


def tokenize(source: str) -> list[Token]:
    """CEL tokens of `source`, whitespace and comments dropped."""
    tokens = []
    for match in _TOKEN.finditer(source):
        kind = match.lastgroup or "other"
        if kind != "ws":
            tokens.append(Token(kind, match.group(), match.start()))
    return tokens


def string_value(token: Token) -> str:
    """The value of a string literal token (CEL escapes are a subset of Python's)."""
    try:
        value = ast.literal_eval(token.text)
    except (ValueError, SyntaxError):
        return token.text.strip("\"'")
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def scan(source: str, roots: frozenset[str]) -> Facts:
    """Collect references to `roots`, calls, regex patterns and top-level `&&` terms."""
    tokens = tokenize(source)
    facts = Facts()
    facts.bound = _bound_names(tokens)
    _scan_calls(tokens, facts)
    for index, token in enumerate(tokens):
        if (
            token.kind == "ident"
            and token.text in roots - facts.bound
            and not _after_dot(tokens, index)
        ):
            _scan_root(tokens, index, facts)
    facts.conjuncts = _conjuncts(tokens, len(source))
    return facts


def _after_dot(tokens: list[Token], index: int) -> bool:
    return index > 0 and tokens[index - 1].text == "."


def _text(tokens: list[Token], index: int) -> str:
    return tokens[index].text if 0 <= index < len(tokens) else ""


def _text_kind(tokens: list[Token], index: int) -> str:
    return tokens[index].kind if 0 <= index < len(tokens) else ""


def _bound_names(tokens: list[Token]) -> set[str]:
    """Variables bound by comprehension macros: the `x` in `list.all(x, ...)`."""
    bound = set()
    for i, token in enumerate(tokens):
        is_macro = token.text in COMPREHENSIONS and _after_dot(tokens, i)
        if is_macro and _text(tokens, i + 1) == "(" and _text_kind(tokens, i + 2) == "ident":
            bound.add(tokens[i + 2].text)
    return bound


def _scan_calls(tokens: list[Token], facts: Facts) -> None:
    """Record calls, comprehension nesting and the patterns given to `matches`."""
    open_comprehensions: list[int] = []
    depth = 0
    for i, token in enumerate(tokens):
        if token.text in _OPEN:
            depth += 1
        elif token.text in _OPEN.values():
            depth -= 1
            while open_comprehensions and open_comprehensions[-1] > depth:
                open_comprehensions.pop()
        if token.kind != "ident" or _text(tokens, i + 1) != "(":
            continue
        facts.calls.append((token.text, token.offset))
        if token.text in COMPREHENSIONS and _after_dot(tokens, i):
            facts.comprehensions.append((token.text, token.offset, len(open_comprehensions)))
            open_comprehensions.append(depth + 1)
        if token.text == "matches":
            _scan_pattern(tokens, i, facts)


def _scan_pattern(tokens: list[Token], index: int, facts: Facts) -> None:
    argument = index + 2
    if _after_dot(tokens, index) and argument < len(tokens):
        literal = tokens[argument]
        if literal.kind == "string" and _text(tokens, argument + 1) == ")":
            facts.patterns.append(literal)
            return
    facts.non_literal_patterns.append(tokens[index].offset)


def _scan_root(tokens: list[Token], index: int, facts: Facts) -> None:
    """Follow `root.a.b` / `root["a"]` selections from a root variable."""
    root = tokens[index]
    path = [root.text]
    first: tuple[str, int] | None = None
    i = index + 1
    while i < len(tokens):
        step = _selection(tokens, i)
        if step is None:
            break
        name, offset, width = step
        if first is None:
            first = (name, offset)
        path.append(name)
        i += width
    if first is None or first[0] == "*":
        facts.references.append(Reference(root.text, "*" if first else "", root.offset))
    else:
        facts.references.append(Reference(root.text, first[0], first[1]))
    facts.reads.append(tuple(p for p in path if p != "*"))


def _selection(tokens: list[Token], i: int) -> tuple[str, int, int] | None:
    """`.name` (not a method call) or `["name"]` at `i`: (name, offset, tokens used)."""
    if _text(tokens, i) == "." and i + 1 < len(tokens) and tokens[i + 1].kind == "ident":
        if _text(tokens, i + 2) == "(":
            return None
        return tokens[i + 1].text, tokens[i + 1].offset, 2
    if _text(tokens, i) == "[":
        key = tokens[i + 1] if i + 1 < len(tokens) else None
        if key is not None and key.kind == "string" and _text(tokens, i + 2) == "]":
            return string_value(key), key.offset, 3
        return "*", tokens[i].offset, 1
    return None


def _conjuncts(tokens: list[Token], length: int) -> list[tuple[int, int]]:
    """Character spans of the top-level `&&` terms; one span when the top level has `||`/`?:`."""
    depth = 0
    cuts: list[Token] = []
    for token in tokens:
        if token.text in _OPEN:
            depth += 1
        elif token.text in _OPEN.values():
            depth -= 1
        elif depth == 0 and token.text in ("||", "?", ":"):
            return [(0, length)]
        elif depth == 0 and token.text == "&&":
            cuts.append(token)
    spans, start = [], 0
    for cut in cuts:
        spans.append((start, cut.offset))
        start = cut.offset + 2
    spans.append((start, length))
    return spans
