"""One policy's decision on one recorded post, fast, with exactly `CompiledPolicy`'s outcome.

Running a compiled term costs a few microseconds of CEL, and its environment (the post, each
signal map) more: about 150 µs a policy a post. Most terms are far simpler than CEL needs to
be: a score against a number, a flag, a pattern on the text, a post field. `policies.terms`
answers those in Python wherever CEL would answer the same; any other term runs compiled, in
the post's own CEL environment, built only when first needed.

The rules' outcomes are then reduced as `CompiledPolicy.decide` and `needed_for` reduce them.
A rule's outcome does not depend on the order of its terms: any false term makes it no match,
else any error makes it an error, else any term lacking a signal leaves it undecided, else it
matches. So the terms answered here run first, and the others only where none was false.
`tests/unit/replay/test_replay_fast.py` holds this against the policy engine on random posts.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from contracts.producers import request_key
from contracts.records import Action
from policies.compiled import CompiledPolicy, CompiledRule
from policies.expressions import SignalRef, Term
from policies.scope import PostScope, run_term
from policies.terms import SLOW, Answer, RecordKey, answer_for, first_guard
from policies.truncation import CUT_TEXT_RULE

CEL_COST = 2  # a term CEL answers comes after those answered here (0: arithmetic, 1: text)


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
        post: dict[str, Any],
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
    keys: frozenset[RecordKey]
    answer: Answer | None
    cost: int


@dataclass(frozen=True)
class FastRule:
    """A rule with its terms, those answered in Python first, and what it reads."""

    rule: CompiledRule
    rank: tuple[int, int, int]
    terms: tuple[FastTerm, ...]
    reads: tuple[tuple[SignalRef, RecordKey], ...]
    # A term `<signal> <op> <double>`, tested inline first: most rules end there, not matching.
    guard: tuple[RecordKey, Callable[[Any, Any], bool], float] | None = None


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
        terms.sort(key=lambda t: t.cost)  # cheapest first; the order changes no outcome
        reads = tuple((ref, self.keys[ref]) for ref in sorted(rule.condition.needs.refs, key=str))
        guard = first_guard([term.source for term in rule.condition.terms], self.keys)
        return FastRule(rule, rule.rank, tuple(terms), reads, guard)

    def _term(self, term: Term) -> FastTerm:
        keys = frozenset(self.keys[ref] for ref in term.needs.refs)
        found = answer_for(term.source, self.keys, self.policy.functions)
        if found is None:
            return FastTerm(term, keys, None, CEL_COST)
        return FastTerm(term, keys, *found)

    def decide(self, row: Row) -> tuple[Decided | None, tuple[SignalRef, ...]]:
        """The decision, or None and each signal the record lacks that could change it (as
        `needed_for` finds them), sorted."""
        matched: list[FastRule] = []
        undecided: list[FastRule] = []
        computed = row.computed
        for rule in self.rules:
            guard = rule.guard
            if guard is not None:
                value = computed.get(guard[0])
                if type(value) is float and value == value and not guard[1](value, guard[2]):
                    continue  # a false term: no match, whatever the other terms give
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
        present = row.computed.keys()
        error = undecided = False
        deferred = []
        for fast in rule.terms:
            if not fast.keys <= present:
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
    ) -> tuple[SignalRef, ...]:
        lacking = set()
        for rule in undecided:
            if best is not None and rule.rank >= best:
                continue
            for ref, key in rule.reads:
                if key not in row.computed and key not in row.unavailable:
                    lacking.add(ref)
        return tuple(sorted(lacking, key=str))
