"""Compile a rule's `when` into bounded CEL programs, one per top-level `&&` term.

Why this is safe to run on every post:
- CEL has no loops, I/O or host access; only the functions in `ALLOWED_FUNCTIONS` may be called.
- `matches` takes only literal patterns, capped in size and compiled at load time; each runs
  precompiled under a timeout with CEL's linear-time Rust engine as fallback
  (`policies.patterns`), so no pattern can backtrack without bound.
- Conditions are capped in size and in comprehensions (none nested), so a condition's cost is
  bounded by its size times the size of the post. The engine cannot pre-empt the Rust
  evaluator, so that bound is the time bound.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cel

from contracts.producers import Variable
from policies.celscan import Facts, Reference, scan, string_value
from policies.patterns import PatternRegistry
from policies.typecheck import TypedFields, check_types

BUILTIN_TYPES = {"text": "string", "post": "map(string, dyn)"}
# Fields of `post` the engine sets, never the message: `post.truncated` (the text was cut).
BUILTIN_FIELDS: TypedFields = {"post": (frozenset({"truncated"}), "bool")}
BUILTIN_ROOTS = frozenset(BUILTIN_TYPES)
TEXT_SCANS = frozenset({"matches", "contains"})
ALLOWED_FUNCTIONS = frozenset(
    {"size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double"}
    | {"string", "bytes", "timestamp", "duration", "type", "dyn", "getFullYear", "getMonth"}
    | {"getDayOfYear", "getDayOfMonth", "getDate", "getDayOfWeek", "getHours", "getMinutes"}
    | {"getSeconds", "getMilliseconds"}
)
_MACROS = frozenset({"has", "all", "exists", "exists_one", "map", "filter"})
_EXPECTING = re.compile(r" expecting (\{[^}]*\}|\S+)")
_POSITION = re.compile(r"<input>:(\d+):(\d+): (.*)")


@dataclass(frozen=True)
class ExpressionLimits:
    """Bounds on what one condition may cost, and on all of one policy's conditions together."""

    max_chars: int = 2000
    max_regex_chars: int = 500
    max_comprehensions: int = 3
    max_text_scans: int = 256


SignalRef = tuple[str, str | None]  # (variable, item): `answers.minor` or (`nsfw`, None)


@dataclass(frozen=True)
class Needs:
    """Signals a condition reads, as (variable, item); text and post are free and not listed."""

    refs: frozenset[SignalRef] = frozenset()

    def __or__(self, other: Needs) -> Needs:
        return Needs(self.refs | other.refs)

    @property
    def cheap(self) -> bool:
        """True when no producer's signal is read."""
        return not self.refs

    def satisfied_by(self, present: Needs) -> bool:
        """True when `present` carries every signal needed here (the hot path of evaluation)."""
        return self.refs <= present.refs

    def missing(self, present: Needs) -> list[str]:
        """Signals needed here that `present` lacks, as `labels.x` or `nsfw`."""
        return sorted(_dotted(ref) for ref in self.refs - present.refs)


def _dotted(ref: SignalRef) -> str:
    variable, item = ref
    return variable if item is None else f"{variable}.{item}"


@dataclass(frozen=True)
class Declared:
    """What a policy's `signals:` declares, and every variable the registry knows.

    `variables` maps each declared variable to its producer; `items` lists the declared names
    of keyed variables (`answers` -> {minor, ...}); `known` maps every variable any registered
    producer gives to that producer and its declaration, so reading an undeclared one gets a
    precise message.
    """

    variables: Mapping[str, Variable] = field(default_factory=dict)
    items: Mapping[str, frozenset[str]] = field(default_factory=dict)
    known: Mapping[str, tuple[str, Variable]] = field(default_factory=dict)
    costs: Mapping[str, int] = field(default_factory=dict)

    @property
    def roots(self) -> frozenset[str]:
        """Every top-level variable a condition may name."""
        return BUILTIN_ROOTS | frozenset(self.known) | frozenset(self.variables)

    @property
    def types(self) -> dict[str, str]:
        """Each root's CEL type, for the type checker."""
        undeclared = {name: "dyn" for name in self.known}
        declared = {name: variable.cel_type for name, variable in self.variables.items()}
        return undeclared | declared | BUILTIN_TYPES

    def cost(self, needs: Needs) -> int:
        """The cost class of the dearest signal `needs` reads (0: text and post only)."""
        return max((self.costs.get(variable, 0) for variable, _ in needs.refs), default=0)


@dataclass(frozen=True)
class Term:
    """One top-level `&&` term, compiled, with the signals it reads."""

    source: str
    program: Any
    needs: Needs
    reads: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Condition:
    """A compiled `when`: terms ordered cheap first; all must hold.

    `scans` holds the offset of each `matches`/`contains` call: each may read the whole text.
    """

    source: str
    terms: tuple[Term, ...]
    needs: Needs
    reads: tuple[tuple[str, ...], ...]
    scans: tuple[int, ...] = ()


Finding = tuple[int, str]


def compile_condition(
    source: str,
    declared: Declared,
    limits: ExpressionLimits | None = None,
    patterns: PatternRegistry | None = None,
) -> tuple[Condition | None, list[Finding]]:
    """Compile and check `source`; findings are (offset in source, message).

    With `patterns`, literal `matches()` calls become the registry's precompiled functions,
    which the CEL context must then carry (CompiledPolicy does).
    """
    limits = limits or ExpressionLimits()
    if len(source) > limits.max_chars:
        return None, [
            (0, f"condition is {len(source)} characters, over the {limits.max_chars} limit")
        ]
    try:
        program = cel.compile(source)
    except ValueError as exc:
        return None, [_syntax_finding(source, str(exc))]
    facts = scan(source, declared.roots)
    findings = _check_names(program, facts, declared)
    findings += _check_cost(facts, limits)
    findings += _check_patterns(facts, limits)
    if findings:
        return None, findings
    findings = check_types(source, declared.types, BUILTIN_FIELDS)
    if findings:
        return None, findings
    return _condition(source, facts, declared, patterns or PatternRegistry()), []


def _syntax_finding(source: str, message: str) -> Finding:
    match = _POSITION.search(message)
    if match is None:
        return 0, f"condition does not compile: {message.splitlines()[0]}"
    line, col = int(match.group(1)), int(match.group(2))
    starts = [0] + [m.end() for m in re.finditer("\n", source)]
    offset = starts[min(line, len(starts)) - 1] + col - 1
    reason = _EXPECTING.sub("", match.group(3)).replace("Syntax error: ", "")
    reason = reason.replace("mismatched input '<EOF>'", "unexpected end of condition")
    return min(offset, max(len(source) - 1, 0)), f"condition does not compile: {reason}"


def _suggest(name: str, choices: frozenset[str]) -> str:
    close = difflib.get_close_matches(name, sorted(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_names(program: Any, facts: Facts, declared: Declared) -> list[Finding]:
    findings: list[Finding] = []
    for name in sorted(set(program.variables()) - facts.bound - declared.roots):
        offset = next((off for n, off in _idents(facts) if n == name), 0)
        scope = ", ".join(sorted(declared.roots))
        findings.append((offset, f"unknown variable {name!r}; in scope: {scope}"))
    for name, offset in facts.calls:
        if name not in ALLOWED_FUNCTIONS | _MACROS:
            findings.append((offset, f"function {name!r} is not available in conditions"))
    for ref in facts.references:
        findings += _check_reference(ref, declared)
    return findings


def _idents(facts: Facts) -> list[tuple[str, int]]:
    return [(ref.root, ref.offset) for ref in facts.references] + facts.calls


def _check_reference(ref: Reference, declared: Declared) -> list[Finding]:
    if ref.root in BUILTIN_ROOTS:
        return []
    producer, known = declared.known.get(ref.root, (ref.root, None))
    variable = declared.variables.get(ref.root)
    if variable is None:
        if known is not None and known.keyed and ref.name not in ("", "*"):
            message = f"{known.item} {ref.name!r} is not declared in signals.{producer}"
            return [(ref.offset, message)]
        return [(ref.offset, f"{ref.root} is read but signals.{producer} is not set")]
    if not variable.keyed or ref.name in ("", "*"):
        return []
    items = declared.items.get(ref.root)
    if items is None:  # its section is invalid, and that error says so
        return []
    if ref.name not in items:
        hint = _suggest(ref.name, items)
        message = f"{variable.item} {ref.name!r} is not declared in signals.{producer}{hint}"
        return [(ref.offset, message)]
    return []


def _check_cost(facts: Facts, limits: ExpressionLimits) -> list[Finding]:
    findings = [
        (offset, f"{name}() inside another comprehension is not allowed (cost would multiply)")
        for name, offset, nesting in facts.comprehensions
        if nesting > 0
    ]
    if len(facts.comprehensions) > limits.max_comprehensions:
        _, offset, _ = facts.comprehensions[limits.max_comprehensions]
        findings.append((offset, f"more than {limits.max_comprehensions} comprehensions"))
    return findings


def _check_patterns(facts: Facts, limits: ExpressionLimits) -> list[Finding]:
    findings = [
        (offset, "matches() takes a string literal pattern, so it can be checked at load time")
        for offset in facts.non_literal_patterns
    ]
    for token in facts.patterns:
        size = len(string_value(token))
        if size > limits.max_regex_chars:
            findings.append(
                (
                    token.offset,
                    f"regex is {size} characters, over the {limits.max_regex_chars} limit",
                )
            )
            continue
        try:
            cel.compile(f'"".matches({token.text})').execute()
        except Exception as exc:  # any failure means the regex is unusable
            findings.append((token.offset, f"regex does not compile: {_regex_reason(str(exc))}"))
    return findings


def _regex_reason(message: str) -> str:
    for line in message.splitlines():
        if line.startswith("error:"):
            return line.removeprefix("error:").strip().split(". Check function")[0]
    return message.splitlines()[0]


def _condition(
    source: str, facts: Facts, declared: Declared, patterns: PatternRegistry
) -> Condition:
    terms = _split_terms(source, facts, declared, patterns)
    if terms is None:
        reads = tuple(dict.fromkeys(facts.reads))
        program = cel.compile(patterns.rewrite(source))
        terms = [Term(source, program, _needs(facts.references, declared), reads)]
    terms.sort(key=lambda term: declared.cost(term.needs))  # stable: source order within a cost
    needs = Needs()
    for term in terms:
        needs = needs | term.needs
    reads = tuple(dict.fromkeys(read for term in terms for read in term.reads))
    scans = tuple(offset for name, offset in facts.calls if name in TEXT_SCANS)
    return Condition(source, tuple(terms), needs, reads, scans)


def _split_terms(
    source: str, facts: Facts, declared: Declared, patterns: PatternRegistry
) -> list[Term] | None:
    """One term per top-level `&&` operand; None when a piece does not compile alone."""
    if len(facts.conjuncts) < 2:
        return None
    terms = []
    for start, end in facts.conjuncts:
        text = source[start:end].strip()
        try:
            program = cel.compile(patterns.rewrite(text))
        except ValueError:
            return None
        refs = [ref for ref in facts.references if start <= ref.offset < end]
        reads = tuple(dict.fromkeys(scan(text, declared.roots).reads))
        terms.append(Term(text, program, _needs(refs, declared), reads))
    return terms


def _needs(refs: list[Reference], declared: Declared) -> Needs:
    needed: set[SignalRef] = set()
    for ref in refs:
        variable = declared.variables.get(ref.root)
        if variable is None:
            continue
        if not variable.keyed:
            needed.add((ref.root, None))
        elif ref.name in ("", "*"):
            needed |= {(ref.root, item) for item in declared.items.get(ref.root, ())}
        else:
            needed.add((ref.root, ref.name))
    return Needs(frozenset(needed))
