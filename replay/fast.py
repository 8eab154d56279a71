"""One policy's decision on one recorded post, fast, with exactly `CompiledPolicy`'s outcome.

Running a compiled term costs a few microseconds of CEL, and its environment (the post, each
signal map) more: about 150 µs a policy a post. Most terms are far simpler than CEL: a score
against a number (`labels.weapon > 0.8`), a flag (`banks["known-bad"]`), a pattern on a
string (`text.matches("...")`), `post.truncated`. Such a term is answered here in Python, and
only when the value is of the very type CEL would compare in the same way (a float against a
float literal, a bool, a str); anything else (another type, another shape of term) runs the
compiled term in the post's own CEL environment, built only when first needed.

The rules' outcomes are then reduced as `CompiledPolicy.decide` and `needed_for` reduce them.
A rule's outcome does not depend on the order of its terms: any false term makes it no match,
else any error makes it an error, else any term lacking a signal leaves it undecided, else it
matches. So the terms answered here run first, and the others only where none was false.
`tests/unit/replay/test_replay_fast.py` holds this against the policy engine on random posts.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from contracts.producers import request_key
from contracts.records import Action
from policies.celscan import Token, string_value, tokenize
from policies.compiled import CompiledPolicy, CompiledRule
from policies.expressions import SignalRef, Term
from policies.scope import PostScope, run_term
from policies.truncation import CUT_TEXT_RULE

SLOW = object()  # a fast term's answer when CEL must answer instead
RecordKey = tuple[str, str]  # (producer, request key), as a record keeps values
Answer = Callable[["Row"], Any]  # True, False or SLOW; runs only when the term's values are there
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_SWAPPED = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==", "!=": "!="}


class Row:
    """One recorded post's inputs, shared by every policy that decides it."""

    __slots__ = (
        "_context",
        "_owner",
        "_scope",
        "computed",
        "post",
        "text",
        "truncated",
        "unavailable",
    )

    def __init__(
        self,
        post: Mapping[str, Any],
        truncated: bool,
        computed: dict[RecordKey, Any],
        unavailable: dict[RecordKey, str],
    ) -> None:
        self.post = post
        self.truncated = truncated
        self.text = post.get("text") or ""  # as PostScope reads it
        self.computed = computed
        self.unavailable = unavailable
        self._scope: PostScope | None = None
        self._owner: object = None  # the policy whose signals the CEL environment holds
        self._context: Any = None

    def scope(self) -> PostScope:
        """The post's CEL environment, made on first use."""
        if self._scope is None:
            self._scope = PostScope(self.post, truncated=self.truncated)
        return self._scope


@dataclass(frozen=True)
class Decided:
    """What a policy decided: the action and the ids of the rules that matched, in order."""

    action: Action
    rules: tuple[str, ...]


@dataclass(frozen=True)
class FastTerm:
    """A term, the recorded keys of the values it reads, and its Python answer if it has one."""

    term: Term
    keys: tuple[RecordKey, ...]
    answer: Answer | None


@dataclass(frozen=True)
class FastRule:
    """A rule with its terms, those answered in Python first, and what it reads."""

    rule: CompiledRule
    rank: tuple[int, int, int]
    terms: tuple[FastTerm, ...]
    reads: tuple[tuple[SignalRef, RecordKey], ...]


class FastPolicy:
    """A compiled policy's decisions from recorded values, keyed as a record keys them."""

    def __init__(self, policy: CompiledPolicy) -> None:
        self.policy = policy
        self.keys: dict[SignalRef, RecordKey] = {
            ref: (asked.producer, request_key(asked.request)) for ref, asked in policy.asks.items()
        }
        self.requests: dict[RecordKey, tuple[str, Hashable]] = {
            self.keys[ref]: (asked.producer, asked.request) for ref, asked in policy.asks.items()
        }
        self.rules = tuple(self._rule(rule) for rule in policy.rules)

    def _rule(self, rule: CompiledRule) -> FastRule:
        terms = [self._term(term) for term in rule.condition.terms]
        terms.sort(key=lambda t: t.answer is None)  # Python answers first; order is free
        reads = tuple((ref, self.keys[ref]) for ref in sorted(rule.condition.needs.refs, key=str))
        return FastRule(rule, rule.rank, tuple(terms), reads)

    def _term(self, term: Term) -> FastTerm:
        keys = tuple(self.keys[ref] for ref in sorted(term.needs.refs, key=str))
        return FastTerm(term, keys, answer_for(term, self.keys, self.policy.functions))

    def decide(self, row: Row) -> tuple[Decided | None, tuple[str, ...]]:
        """The decision, or None and `<signal> not recorded` for each lacking value that
        could change it (as `needed_for` finds them)."""
        matched: list[FastRule] = []
        undecided: list[FastRule] = []
        for rule in self.rules:
            outcome = self._outcome(rule, row)
            if outcome == "match":
                matched.append(rule)
            elif outcome == "undecided":
                undecided.append(rule)
        best = min((rule.rank for rule in matched), default=None)
        missing = self._missing(undecided, best, row)
        if missing:
            return None, missing
        policy = self.policy
        winner = min(matched, key=lambda rule: rule.rank, default=None)
        action = winner.rule.action if winner is not None else policy.default
        ids = tuple(rule.rule.id for rule in matched)
        if row.truncated and not policy.reads_truncated and action is Action.ALLOW:
            return Decided(Action.REVIEW, (*ids, CUT_TEXT_RULE)), ()
        return Decided(action, ids), ()

    def _outcome(self, rule: FastRule, row: Row) -> str:
        """match, no-match, error or undecided, as `CompiledRule.test` would find."""
        computed = row.computed
        error = undecided = False
        deferred = []
        for fast in rule.terms:
            if not all(key in computed for key in fast.keys):
                undecided = True
                continue
            value = SLOW if fast.answer is None else fast.answer(row)
            if value is SLOW:
                deferred.append(fast.term)
                continue
            if value is False:
                return "no-match"
            error = error or value is not True
        for term in deferred:
            value = run_term(term, self._context(row), row.scope().terms)
            if value is False:
                return "no-match"
            error = error or value is not True
        return "error" if error else "undecided" if undecided else "match"

    def _context(self, row: Row) -> Any:
        """This policy's CEL environment on the row, as `CompiledPolicy.run_rules` sets it."""
        if row._owner is not self:
            computed = {self.requests[k]: v for k, v in row.computed.items() if k in self.requests}
            variables: dict[str, Any] = {
                var: {} for var, keyed in self.policy.keyed.items() if keyed
            }
            variables |= self.policy.view(computed).values
            row._context = row.scope().context_for(self.policy.functions, variables)
            row._owner = self
        return row._context

    def _missing(
        self, undecided: list[FastRule], best: tuple[int, int, int] | None, row: Row
    ) -> tuple[str, ...]:
        lacking = set()
        for rule in undecided:
            if best is not None and rule.rank >= best:
                continue
            for ref, key in rule.reads:
                if key not in row.computed and key not in row.unavailable:
                    lacking.add(f"{_dotted(ref)} not recorded")
        return tuple(sorted(lacking))


def answer_for(
    term: Term, keys: Mapping[SignalRef, RecordKey], functions: Mapping[str, Any]
) -> Answer | None:
    """A Python answer for the simple shapes of term; None for any other."""
    tokens = tokenize(term.source)
    negated = bool(tokens) and tokens[0].text == "!"
    body = tokens[1:] if negated else tokens
    if [t.text for t in body] == ["post", ".", "truncated"]:
        return (lambda row: not row.truncated) if negated else (lambda row: row.truncated)
    ref, rest = _reference(body, keys)
    if negated:
        return _flag(keys[ref], negate=True) if ref is not None and not rest else None
    if ref is not None and not rest:
        return _flag(keys[ref], negate=False)
    if len(body) == 6 and [t.text for t in body[:3]] == ["text", ".", "matches"]:
        return _text_match(body[3:], functions)
    if ref is not None and [t.text for t in rest[:2]] == [".", "matches"] and len(rest) == 5:
        return _value_match(keys[ref], rest[2:], functions)
    if ref is not None and len(rest) == 2:
        return _compare(keys[ref], rest[0].text, rest[1])
    if len(body) >= 3 and body[1].text in _OPERATORS:
        swapped, rest_ref = _reference(body[2:], keys)
        if swapped is not None and not rest_ref:
            return _compare(keys[swapped], _SWAPPED[body[1].text], body[0])
    return None


def _reference(
    tokens: list[Token], keys: Mapping[SignalRef, RecordKey]
) -> tuple[SignalRef | None, list[Token]]:
    """A signal read at the start of `tokens` (`nsfw`, `labels.x`, `banks["x"]`), and the rest."""
    if not tokens or tokens[0].kind != "ident":
        return None, tokens
    root = tokens[0].text
    texts = [t.text for t in tokens[:4]]
    if len(tokens) >= 3 and texts[1] == "." and tokens[2].kind == "ident":
        ref: SignalRef = (root, tokens[2].text)
        if ref in keys and texts[2] != "matches":
            return ref, tokens[3:]
    if len(tokens) >= 4 and texts[1] == "[" and texts[3] == "]" and _plain_string(tokens[2]):
        ref = (root, string_value(tokens[2]))
        if ref in keys:
            return ref, tokens[4:]
    if (root, None) in keys:
        return (root, None), tokens[1:]
    return None, tokens


def _plain_string(token: Token) -> bool:
    """A string literal without a prefix (no bytes, no raw string)."""
    return token.kind == "string" and token.text[:1] in ("'", '"')


def _double(token: Token) -> float | None:
    """The value of a double literal (`0.8`, `1e-3`); None for ints, uints and hex."""
    text = token.text
    if token.kind != "number" or text.endswith(("u", "U")) or text.startswith(("0x", "0X")):
        return None
    if not any(mark in text for mark in ".eE"):
        return None
    return float(text)


def _compare(key: RecordKey, symbol: str, literal: Token) -> Answer | None:
    """`value <op> double`, where the value is a float."""
    bound, compare = _double(literal), _OPERATORS.get(symbol)
    if bound is None or compare is None:
        return None

    def answer(row: Row) -> Any:
        value = row.computed[key]
        return compare(value, bound) if type(value) is float else SLOW

    return answer


def _flag(key: RecordKey, *, negate: bool) -> Answer:
    """A bool value, or its negation."""

    def answer(row: Row) -> Any:
        value = row.computed[key]
        if type(value) is not bool:
            return SLOW
        return not value if negate else value

    return answer


def _matcher(tokens: list[Token], functions: Mapping[str, Any]) -> Any:
    """The policy's precompiled matcher of `("<literal>")`, or None."""
    if len(tokens) != 3 or tokens[0].text != "(" or tokens[2].text != ")":
        return None
    if tokens[1].kind != "string":
        return None
    pattern = string_value(tokens[1])
    found = [f for f in functions.values() if getattr(f, "pattern", None) == pattern]
    return found[0] if found else None


def _text_match(tokens: list[Token], functions: Mapping[str, Any]) -> Answer | None:
    """`text.matches("...")` with the policy's own matcher."""
    matcher = _matcher(tokens, functions)
    if matcher is None:
        return None
    return lambda row: matcher(row.text) if type(row.text) is str else SLOW


def _value_match(
    key: RecordKey, tokens: list[Token], functions: Mapping[str, Any]
) -> Answer | None:
    """`<signal>.matches("...")` on a string value."""
    matcher = _matcher(tokens, functions)
    if matcher is None:
        return None

    def answer(row: Row) -> Any:
        value = row.computed[key]
        return matcher(value) if type(value) is str else SLOW

    return answer


def _dotted(ref: SignalRef) -> str:
    variable, item = ref
    return variable if item is None else f"{variable}.{item}"
