"""Compile a rule's `when` into bounded CEL programs, one per top-level `&&` term.

Why this is safe to run on every post:
- CEL has no loops, I/O or host access; only the functions in `ALLOWED_FUNCTIONS` may be called.
- `matches` takes only literal patterns, capped in size and compiled at load time; each runs
  precompiled under a timeout with CEL's linear-time Rust engine as fallback
  (`policies.patterns`), so no pattern can backtrack without bound.
- Conditions are capped in size and in comprehensions (none nested), so a condition's cost is
  bounded by its size times the size of the post. The engine cannot pre-empt the Rust
  evaluator, so that bound is the time bound; the engine also counts slow rules.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import cel

from policies.celscan import Facts, Reference, scan, string_value
from policies.patterns import PatternRegistry
from policies.typecheck import check_types

BUILTIN_TYPES = {
    "text": "string",
    "description": "string",
    "labels": "map(string, double)",
    "answers": "map(string, double)",
    "post": "map(string, dyn)",
}
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


@dataclass(frozen=True)
class Needs:
    """Model signals a condition reads; text and post fields are free and not listed."""

    labels: frozenset[str] = frozenset()
    answers: frozenset[str] = frozenset()
    describe: bool = False
    extra: frozenset[str] = frozenset()

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            self.labels | other.labels,
            self.answers | other.answers,
            self.describe or other.describe,
            self.extra | other.extra,
        )

    @property
    def cheap(self) -> bool:
        """True when no model signal is read."""
        return not (self.labels or self.answers or self.describe or self.extra)

    def satisfied_by(self, present: Needs) -> bool:
        """True when `present` carries every signal needed here (the hot path of evaluation)."""
        return (
            self.labels <= present.labels
            and self.answers <= present.answers
            and (present.describe or not self.describe)
            and self.extra <= present.extra
        )

    def missing(self, present: Needs) -> list[str]:
        """Signals needed here that `present` lacks, as `labels.x`-style names."""
        gone = [f"labels.{n}" for n in sorted(self.labels - present.labels)]
        gone += [f"answers.{n}" for n in sorted(self.answers - present.answers)]
        gone += ["description"] if self.describe and not present.describe else []
        return gone + sorted(self.extra - present.extra)


@dataclass(frozen=True)
class Declared:
    """The signal names a policy declares; conditions may read only these."""

    labels: frozenset[str]
    questions: frozenset[str]
    describe: bool
    extra: frozenset[str]

    @property
    def roots(self) -> frozenset[str]:
        """Every top-level variable a condition may name."""
        return BUILTIN_ROOTS | self.extra

    @property
    def types(self) -> dict[str, str]:
        """Each root's CEL type; extra signals are `dyn` until their producers declare one."""
        return {name: "dyn" for name in self.extra} | BUILTIN_TYPES


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
    findings = check_types(source, declared.types)
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
    if ref.root == "description" and not declared.describe:
        return [(ref.offset, "description is read but signals.describe is not true")]
    if ref.name in ("", "*"):
        return []
    if ref.root == "labels" and ref.name not in declared.labels:
        hint = _suggest(ref.name, declared.labels)
        return [(ref.offset, f"label {ref.name!r} is not declared in signals.labels{hint}")]
    if ref.root == "answers" and ref.name not in declared.questions:
        hint = _suggest(ref.name, declared.questions)
        return [(ref.offset, f"question {ref.name!r} is not declared in signals.questions{hint}")]
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
    terms.sort(key=lambda term: not term.needs.cheap)
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
    labels: set[str] = set()
    answers: set[str] = set()
    for ref in refs:
        if ref.root == "labels":
            labels |= declared.labels if ref.name in ("", "*") else {ref.name}
        elif ref.root == "answers":
            answers |= declared.questions if ref.name in ("", "*") else {ref.name}
    return Needs(
        frozenset(labels),
        frozenset(answers),
        any(ref.root == "description" for ref in refs),
        frozenset(ref.root for ref in refs if ref.root in declared.extra),
    )
