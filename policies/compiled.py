"""A compiled policy and how it decides one post.

Decision semantics: every rule is tested; the verdict takes the most severe matching action
(escalate > block > review > allow), ties to the lower priority number, then to the earlier
rule; the winner gives queue and priority; no match gives `default`.

A rule that fails at run time becomes a RuleError and the others still decide. A rule that
reads a model signal absent from the Signals is *undecided*: when a matching rule already
outranks it, it could not have changed the verdict (this is how signals skipped by the planner
look), so it is listed in `skipped_rules`; otherwise it is a RuleError naming the signal.

A post whose text was cut is not allowed by a policy with no rule reading `post.truncated`: it
is reviewed instead (`policies.truncation`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any

from contracts.records import Action, MatchedRule, PolicyRef, Post, RuleError, Signals
from policies.decision import DEFAULT_PRIORITY, Decision
from policies.expressions import Condition, Needs, SignalRef, Term
from policies.schema import Mode
from policies.scope import LazyContext, PostScope, run_term
from policies.terms import SLOW, Answer, answer_for, first_guard
from policies.truncation import CUT_TEXT_QUEUE, reads_truncated, review_cut_text

PostInput = Post | dict[str, Any] | PostScope  # a scope shares the post's CEL values

EVIDENCE_MAX_CHARS = 200


class Outcome(Enum):
    """How one rule came out for one post."""

    MATCH = "match"
    NO_MATCH = "no-match"
    ERROR = "error"
    UNDECIDED = "undecided"
    OUT_OF_TIME = "out-of-time"


@dataclass(frozen=True)
class Deadline:
    """When one post's policy work must stop, and the budget it came from."""

    at: float
    budget_ms: float

    @classmethod
    def after(cls, budget_s: float | None) -> Deadline | None:
        """A deadline `budget_s` from now; None means no budget."""
        if budget_s is None:
            return None
        return cls(time.perf_counter() + budget_s, budget_s * 1000)

    def result(self) -> RuleResult:
        """What a rule not run for lack of time comes out as."""
        reason = f"not evaluated: the post's policy time budget of {self.budget_ms:g} ms ran out"
        return RuleResult(Outcome.OUT_OF_TIME, reason)


class RuleResult:
    """A rule's outcome, with the error text or the missing signals.

    A plain slotted class: planning makes one for every undecided rule of every post."""

    __slots__ = ("error", "needs", "outcome", "present")

    def __init__(
        self,
        outcome: Outcome,
        error: str = "",
        needs: Needs | None = None,
        present: Needs | None = None,
    ) -> None:
        self.outcome, self.error, self.needs, self.present = outcome, error, needs, present

    def __repr__(self) -> str:
        return f"RuleResult({self.outcome.value}, {self.detail!r})"

    @property
    def detail(self) -> str:
        """The error, or the missing signals by name (built only when reported)."""
        if self.needs is not None and self.present is not None:
            return ", ".join(self.needs.missing(self.present))
        return self.error


_ABSENT = object()  # a value not in `computed`
# Results without detail are immutable and alike: one of each serves every rule run.
_MATCH = RuleResult(Outcome.MATCH)
_NO_MATCH = RuleResult(Outcome.NO_MATCH)
PythonTerm = tuple[Term, Answer | None]  # a term and its Python answer, where it has one
# `<signal> <op> <double>`: the signal, the comparison and the number (`terms.guard_for`).
Guard = tuple[SignalRef, Callable[[Any, Any], bool], float]


@dataclass(frozen=True)
class CompiledRule:
    """A rule ready to run: its condition's terms are compiled and ordered cheap first."""

    id: str
    index: int
    action: Action
    queue: str | None
    priority: int
    reason: str | None
    condition: Condition

    @cached_property
    def rank(self) -> tuple[int, int, int]:
        """Smaller wins: most severe action, then lower priority number, then earlier rule."""
        return (-self.action.severity, self.priority, self.index)

    def test(
        self,
        context: Any,
        present: Needs,
        memo: dict[int, tuple[Term, Any]] | None = None,
        terms: tuple[PythonTerm, ...] | None = None,
        row: Any = None,
    ) -> RuleResult:
        """Run the terms in order; a false term decides at once, even after an error.

        `memo` (one per post, `PostScope.terms`) keeps what each term reading no signal gave:
        on the same post it gives the same, so planning and deciding run it once. `terms` are
        this rule's terms with their Python answers (`policies.terms`), read from `row`; a term
        without one, or whose answer is not sure, runs in CEL (`context`, a CEL context or a
        `LazyContext`).
        """
        failure: RuleResult | None = None
        present_refs = present.refs
        for term, answer in terms or [(term, None) for term in self.condition.terms]:
            refs = term.needs.refs
            if not refs <= present_refs:
                failure = failure or RuleResult(
                    Outcome.UNDECIDED, needs=term.needs, present=present
                )
                continue
            # The hot paths inline: a term reading signals answered in Python (run_term's first
            # step), and a term reading none whose value this post already has (its memo).
            if refs:
                value = SLOW if answer is None else answer(row)
                if value is SLOW:
                    value = run_term(term, context, memo, None, row)
            elif memo is not None and (held := memo.get(id(term))) is not None:
                value = held[1]
            else:
                value = run_term(term, context, memo, answer, row)
            if isinstance(value, Exception):
                failure = RuleResult(Outcome.ERROR, _describe_error(value))
                continue
            if value is False:
                return _NO_MATCH
            if value is not True:
                failure = RuleResult(Outcome.ERROR, f"condition gave {value!r}, not true/false")
        return failure or _MATCH

    def matched(self, variables: dict[str, Any]) -> MatchedRule:
        """This rule as a verdict's MatchedRule, with the values its condition read."""
        return MatchedRule(
            id=self.id,
            action=self.action,
            queue=self.queue,
            priority=self.priority,
            reason=self.reason,
            evidence=_evidence(self.condition.reads, variables),
        )


_NOTHING_DECIDED: Mapping[int, tuple[Any, RuleResult]] = {}


def _decided(scope: PostScope, cel_only: bool) -> Mapping[int, tuple[Any, RuleResult]]:
    """The rules this post already decided; none for a scope that is not growing, and none for
    the CEL-only reference, which runs every rule itself."""
    if cel_only or scope.decided is None:
        return _NOTHING_DECIDED
    return scope.decided


def _not_computed(result: RuleResult, evaluation: Evaluation) -> str:
    """Which signals a rule lacked, and why where the producer said (its store was down)."""
    names = result.detail.split(", ")
    why = {evaluation.unavailable[n] for n in names if n in evaluation.unavailable}
    if not why:
        return f"signal not computed: {result.detail}"
    return f"signal unavailable: {result.detail} ({'; '.join(sorted(why))})"


def _dotted_ref(ref: SignalRef) -> str:
    variable, item = ref
    return variable if item is None else f"{variable}.{item}"


def _describe_error(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no such key: {exc.args[0] if exc.args else exc}"
    text = str(exc).split(". Check that")[0].split(". Check function")[0]
    return f"{type(exc).__name__}: {text}"


def _evidence(reads: tuple[tuple[str, ...], ...], variables: dict[str, Any]) -> dict[str, Any]:
    evidence: dict[str, Any] = {}
    for path in reads:
        if path == ("post",):
            continue
        value: Any = variables
        for step in path:
            if not isinstance(value, dict) or step not in value:
                break
            value = value[step]
        else:
            if isinstance(value, str) and len(value) > EVIDENCE_MAX_CHARS:
                value = value[:EVIDENCE_MAX_CHARS] + "…"
            evidence[".".join(path)] = value
    return evidence


@dataclass(slots=True)  # made for every policy run: frozen ones cost more to build
class Evaluation:
    """Raw per-rule results of one evaluation, before they are reduced to a Decision."""

    results: list[tuple[CompiledRule, RuleResult]]
    variables: dict[str, Any]
    unavailable: Mapping[str, str] = field(default_factory=dict)
    truncated: bool = False  # the decoder cut the post's text


@dataclass(frozen=True)
class Requested:
    """Which producer computes a value a policy reads, and the request it computes."""

    producer: str
    request: Hashable
    needs: tuple[tuple[str, Hashable], ...] = ()  # other producers' values it is computed from


def read_signal(signals: Signals, variable: str) -> Any:
    """The value of `variable` in a Signals record (labels, answers, description or extra)."""
    if variable in Signals.model_fields:
        return getattr(signals, variable)
    return (signals.model_extra or {}).get(variable)


@dataclass(slots=True)  # made for every policy run: frozen ones cost more to build
class SignalView:
    """A policy's signal values under its own names, and which of its signals are present."""

    values: dict[str, Any]
    present: Needs
    unavailable: Mapping[str, str] = field(default_factory=dict)  # `banks.x` -> why
    by_ref: dict[SignalRef, Any] = field(default_factory=dict)  # each present value by its ref


class TermRow:
    """What a term's Python answer reads of one post under one policy (`policies.terms.Row`)."""

    __slots__ = ("computed", "post", "text", "truncated")

    def __init__(self, scope: PostScope, view: SignalView) -> None:
        self.computed = view.by_ref
        self.post = scope.post
        self.text = scope.text
        self.truncated = scope.truncated


class CompiledPolicy:
    """A validated policy: compiled rules, declared signals, queue topics, its tests.

    `asks` maps each value the policy reads, `(variable, item)`, to the producer request
    that computes it; `keyed` says which variables hold named items (`answers.minor`).
    """

    def __init__(
        self,
        *,
        ref: PolicyRef,
        mode: Mode,
        asks: Mapping[SignalRef, Requested],
        keyed: Mapping[str, bool],
        queues: dict[str, str],
        rules: list[CompiledRule],
        default: Action,
        source: str = "",
        tests: list[Any] | None = None,
        functions: dict[str, Any] | None = None,
    ) -> None:
        self.ref = ref
        self.mode = mode
        self.asks = dict(asks)
        self.ask_keys = tuple((ref, (r.producer, r.request)) for ref, r in self.asks.items())
        direct = {(r.producer, r.request) for r in self.asks.values()}
        self.asked = frozenset(direct | {need for r in self.asks.values() for need in r.needs})
        self.keyed = dict(keyed)
        self.keyed_variables = tuple(var for var, is_keyed in self.keyed.items() if is_keyed)
        self.queues = dict(queues)
        self.rules = tuple(rules)
        self.default = default
        self.source = source
        self.tests = list(tests or [])
        self.functions = dict(functions or {})
        self.reads_truncated = reads_truncated(
            [path for rule in self.rules for path in rule.condition.reads]
        )
        self.python_terms = tuple(self._python_terms(rule) for rule in self.rules)
        self.guards = tuple(self._guard(rule) for rule in self.rules)
        self.plans: dict[frozenset[SignalRef], Any] = {}  # `policy_set.plan_of`'s, by needs
        # Rule indexes, most decisive first: planning stops at the first that matches.
        self.by_rank = tuple(sorted(range(len(self.rules)), key=lambda i: self.rules[i].rank))

    def _python_terms(self, rule: CompiledRule) -> tuple[PythonTerm, ...]:
        """The rule's terms, in order, each with its Python answer where it has one.

        The order stays the condition's: when two terms fail, the rule reports the one CEL
        alone would have reported."""
        keys = {ref: ref for ref in self.asks}
        terms = []
        for term in rule.condition.terms:
            found = answer_for(term.source, keys, self.functions)
            terms.append((term, None if found is None else found[0]))
        return tuple(terms)

    def _guard(self, rule: CompiledRule) -> Guard | None:
        """The rule's first term `<signal> <op> <double>`, tested first: most rules on most
        posts end there."""
        keys: dict[SignalRef, SignalRef] = {ref: ref for ref in self.asks}
        return first_guard([term.source for term in rule.condition.terms], keys)

    def __repr__(self) -> str:
        return f"CompiledPolicy({self.ref.id!r} v{self.ref.version} {self.mode.value})"

    def queue_topic(self, queue: str) -> str:
        """The output topic of `queue`: as listed in `queues`, else `review.<queue>`."""
        return self.queues.get(queue) or f"review.{queue}"

    def routed_queues(self) -> dict[str, str]:
        """Queue -> topic for every queue a verdict of this policy can be routed to.

        That is each rule's queue, and the cut-text queue where no rule reads `post.truncated`.
        """
        names = [rule.queue for rule in self.rules if rule.queue]
        if not self.reads_truncated:
            names.append(CUT_TEXT_QUEUE)
        return {name: self.queue_topic(name) for name in names}

    def items(self, variable: str) -> list[str]:
        """The declared item names of a keyed variable, in declaration order."""
        return [item for var, item in self.asks if var == variable and item is not None]

    def view(
        self,
        computed: Mapping[tuple[str, Hashable], Any],
        unavailable: Mapping[tuple[str, Hashable], str] | None = None,
    ) -> SignalView:
        """Producer values keyed by (producer, request), under this policy's own names.

        `unavailable` gives, for values that could not be had, why: rules reading them
        report it.
        """
        values: dict[str, Any] = {}
        by_ref: dict[SignalRef, Any] = {}
        missing: dict[str, str] = {}
        for ref, key in self.ask_keys:
            if unavailable and key in unavailable:
                missing[_dotted_ref(ref)] = unavailable[key]
            value = computed.get(key, _ABSENT)
            if value is _ABSENT:
                continue
            by_ref[ref] = value
            variable, item = ref
            if item is None:
                values[variable] = value
            else:
                values.setdefault(variable, {})[item] = value
        return SignalView(values, Needs(frozenset(by_ref)), missing, by_ref)

    def view_of(self, signals: Signals) -> SignalView:
        """A Signals record (policy names, as in verdicts and tests) as this policy reads it."""
        values: dict[str, Any] = {}
        by_ref: dict[SignalRef, Any] = {}
        for variable, keyed in self.keyed.items():
            value = read_signal(signals, variable)
            if keyed and isinstance(value, dict):
                value = {k: v for k, v in value.items() if (variable, k) in self.asks}
                by_ref |= {(variable, item): item_value for item, item_value in value.items()}
            elif value is not None:
                by_ref[(variable, None)] = value
            if value is not None:
                values[variable] = value
        return SignalView(values, Needs(frozenset(by_ref)), by_ref=by_ref)

    def _setting(
        self, post: PostInput, view: SignalView, cel_only: bool
    ) -> tuple[PostScope, dict[str, Any], LazyContext, TermRow | None]:
        """What a rule run reads: the post's scope, the policy's variables, its (lazy) CEL
        context and the row its Python answers read (None: every term in CEL)."""
        scope = post if isinstance(post, PostScope) else PostScope(post)
        variables: dict[str, Any] = {var: {} for var in self.keyed_variables}
        variables |= view.values
        context = LazyContext(scope, self.functions, variables)
        return scope, variables, context, None if cel_only else TermRow(scope, view)

    def run_rules(
        self,
        post: PostInput,
        signals: Signals | SignalView,
        deadline: Deadline | None = None,
        *,
        cel_only: bool = False,
    ) -> Evaluation:
        """Test every rule against the post; the engine behind evaluate and planning.

        Rules reached after `deadline` are not run; they come out OUT_OF_TIME. Pass the post's
        PostScope when several policies or runs judge one post: its CEL values are shared.
        Terms with a Python answer (`policies.terms`) take it where it is sure, and the CEL
        environment is built only for a term that needs it; `cel_only` runs every term in CEL
        (the reference the Python answers are tested against).
        """
        view = signals if isinstance(signals, SignalView) else self.view_of(signals)
        scope, variables, context, row = self._setting(post, view, cel_only)
        results = []
        decided = _decided(scope, cel_only)
        for index, rule in enumerate(self.rules):
            held = decided.get(id(rule))
            if held is not None:
                results.append((rule, held[1]))
            elif deadline is not None and time.perf_counter() > deadline.at:
                results.append((rule, deadline.result()))
            else:
                results.append((rule, self._test(rule, index, scope, context, view.present, row)))
        variables["text"] = scope.text
        variables["post"] = scope.post
        return Evaluation(results, variables, view.unavailable, scope.truncated)

    def evaluate(
        self,
        post: PostInput,
        signals: Signals | SignalView,
        deadline: Deadline | None = None,
        *,
        cel_only: bool = False,
    ) -> Decision:
        """Decide one post from its signals (keyed by this policy's own names)."""
        return self.decide(self.run_rules(post, signals, deadline, cel_only=cel_only))

    def _test(
        self,
        rule: CompiledRule,
        index: int,
        scope: PostScope,
        context: LazyContext,
        present: Needs,
        row: TermRow | None,
    ) -> RuleResult:
        """Test `rule` (this policy's `index`th); a match or no match is kept in a growing
        scope (`PostScope.decided`): the values it read cannot change."""
        if row is None:  # every term in CEL: the reference, never kept
            return rule.test(context, present, scope.terms, None, row)
        guard = self.guards[index]
        value = None if guard is None else row.computed.get(guard[0])
        if (
            guard is not None
            and type(value) is float
            and value == value
            and not guard[1](value, guard[2])
        ):
            result = _NO_MATCH  # a false term: no match, whatever the other terms give
        else:
            result = rule.test(context, present, scope.terms, self.python_terms[index], row)
        if scope.decided is not None and (result is _MATCH or result is _NO_MATCH):
            scope.decided[id(rule)] = (rule, result)
        return result

    def decide(self, evaluation: Evaluation) -> Decision:
        """Reduce per-rule results to the verdict: most severe, then priority, then order."""
        matched = [rule for rule, r in evaluation.results if r.outcome is Outcome.MATCH]
        winner = min(matched, key=lambda rule: rule.rank, default=None)
        errors, skipped = [], []
        for rule, result in evaluation.results:
            if result.outcome in (Outcome.ERROR, Outcome.OUT_OF_TIME):
                errors.append(RuleError(id=rule.id, error=result.detail))
            elif result.outcome is Outcome.UNDECIDED and winner and winner.rank < rule.rank:
                skipped.append(rule.id)
            elif result.outcome is Outcome.UNDECIDED:
                errors.append(RuleError(id=rule.id, error=_not_computed(result, evaluation)))
        decision = Decision(
            policy=self.ref,
            mode=self.mode,
            action=winner.action if winner else self.default,
            queue=winner.queue if winner else None,
            topic=self.queue_topic(winner.queue) if winner and winner.queue else None,
            priority=winner.priority if winner else DEFAULT_PRIORITY,
            matched_rules=[rule.matched(evaluation.variables) for rule in matched],
            rule_errors=errors,
            skipped_rules=skipped,
        )
        return review_cut_text(
            decision,
            truncated=evaluation.truncated,
            policy_reads_truncated=self.reads_truncated,
            topic=self.queue_topic(CUT_TEXT_QUEUE),
        )

    def needed_for(
        self,
        post: PostInput,
        signals: Signals | SignalView | None = None,
        deadline: Deadline | None = None,
        *,
        cel_only: bool = False,
    ) -> Needs:
        """Signals that could still change this post's decision, judged on what is known.

        A rule not run for lack of time may need anything it reads: its signals are planned.
        The rules are tested most decisive first, as `decide` ranks them, up to the first
        that matches: no rule after it can change the decision.
        """
        view = signals if isinstance(signals, SignalView) else self.view_of(signals or Signals())
        scope, _, context, row = self._setting(post, view, cel_only)
        present, rules = view.present, self.rules
        decided = _decided(scope, cel_only)
        refs: set[SignalRef] = set()
        for index in self.by_rank:
            rule = rules[index]
            held = decided.get(id(rule))
            if held is not None:
                if held[1] is _MATCH:
                    break
                continue
            if deadline is not None and time.perf_counter() > deadline.at:
                refs |= rule.condition.needs.refs
                continue
            outcome = self._test(rule, index, scope, context, present, row).outcome
            if outcome is Outcome.MATCH:
                break
            if outcome is Outcome.UNDECIDED:
                refs |= rule.condition.needs.refs
        return Needs(frozenset(refs))

    def all_needs(self) -> Needs:
        """Every signal some rule of this policy reads."""
        needs = Needs()
        for rule in self.rules:
            needs = needs | rule.condition.needs
        return needs
