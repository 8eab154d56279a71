"""Run policy unit tests: pinned signals in, expected verdict out, a readable diff on failure."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from contracts.producers import (
    NO_EMPTY,
    Input,
    Placement,
    ProducerJob,
    ProducerRegistry,
    Unavailable,
    as_output,
)
from contracts.records import Post, Signals, describe_validation_error
from contracts.registry import default_registry
from contracts.vlm import VlmTask, empty_value
from policies.compiled import CompiledPolicy
from policies.decision import Decision
from policies.exceptions import PolicyInvalid, Problem
from policies.loader import (
    POLICY_SUFFIXES,
    companion_tests,
    is_policy_file,
    is_tests_file,
    load_policy,
    policy_beside,
)
from policies.policy_set import PolicySet, SignalKey
from policies.schema import TestCase
from policies.scope import PostScope
from policies.truncation import TRUNCATED_FIELD

POST_ONLY = frozenset({Input.TEXT, Input.META})


@dataclass(frozen=True)
class CaseResult:
    """One test case's outcome; `diff` has one line per field that differs."""

    file: str
    policy: str
    name: str
    diff: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """True when the verdict matched every expected field."""
        return not self.diff


@dataclass
class TestReport:
    """All cases run, the policy files found, and the paths and files that could not be used."""

    results: list[CaseResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> list[CaseResult]:
        """The cases that did not pass."""
        return [result for result in self.results if not result.passed]

    @property
    def ok(self) -> bool:
        """True when every file loaded and every case passed."""
        return not self.problems and not self.failed


def policy_inputs(paths: list[Path]) -> tuple[list[Path], list[Problem]]:
    """The policy files `paths` give, and a problem for each path that gives none."""
    found: list[Path] = []
    problems = []
    for path in paths:
        files = _policy_files_at(path)
        if not files:
            problems.append(Problem(str(path), 0, 0, _nothing_at(path)))
        found += files
    return list(dict.fromkeys(found)), problems


def _policy_files_at(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and is_policy_file(p))
    if not path.exists():
        return []
    return [policy_beside(path) if is_tests_file(path) else path]


def _nothing_at(path: Path) -> str:
    if path.is_dir():
        return f"no policy files ({', '.join('*' + s for s in POLICY_SUFFIXES)}) found"
    return "no such file or directory"


def run_tests(paths: list[Path], registry: ProducerRegistry | None = None) -> TestReport:
    """Run the `tests:` of every policy found, plus its `<stem>.tests.yaml` companion."""
    registry = registry or default_registry()
    report = TestReport()
    report.files, report.problems = policy_inputs(paths)
    for path in report.files:
        try:
            policy = load_policy(path, registry=registry)
            cases = [*policy.tests, *companion_tests(path, policy.ref.id)]
        except PolicyInvalid as exc:
            report.problems += exc.problems
            continue
        report.results += [run_case(policy, case, str(path), registry) for case in cases]
    return report


def run_case(
    policy: CompiledPolicy,
    case: TestCase,
    file: str = "",
    registry: ProducerRegistry | None = None,
) -> CaseResult:
    """Evaluate one case without touching the policy's counters; compare with `expect`.

    The case's `post.truncated` stands for what the decoder says of a message (a post whose
    text was cut at `posts.max_text_chars`); on the input topic that field is never read.
    """
    truncated = case.post.get(TRUNCATED_FIELD, False)
    if not isinstance(truncated, bool):
        diff = (f"post: {TRUNCATED_FIELD} is true or false, not {truncated!r}",)
        return CaseResult(file, policy.ref.id, case.name, diff)
    try:
        post = Post.model_validate(case.post)
    except ValidationError as exc:
        diff = (f"post: not a valid post: {describe_validation_error(exc)}",)
        return CaseResult(file, policy.ref.id, case.name, diff)
    signals = case_signals(policy, case, post, registry)
    decision = policy.decide(policy.run_rules(PostScope(post, truncated=truncated), signals))
    return CaseResult(file, policy.ref.id, case.name, tuple(compare(case, decision)))


def case_signals(
    policy: CompiledPolicy, case: TestCase, post: Post, registry: ProducerRegistry | None
) -> Signals:
    """Pinned values first; producers that read only the post compute the rest for real.

    Model values that are not pinned read as the model's empty values (it saw nothing): 0.0
    per label and question, "" for the caption, [] for the embedding; so do the values of
    producers that declare an empty value (`empty(request)`: nsfw 0.0, ocr "", no bank match).
    """
    computed: dict[SignalKey, Any] = {
        (asked.producer, asked.request): empty_value(asked.request)
        for asked in policy.asks.values()
        if isinstance(asked.request, VlmTask)
    }
    if registry is not None:
        computed |= _empty_values(policy, registry)
        computed |= _computed_from_post(policy, post, registry)
    values = PolicySet.signals_for(policy, computed).model_dump(exclude_unset=True)
    _overlay(values, case.signals)
    return Signals(**values)


def _overlay(values: dict[str, Any], layer: dict[str, Any]) -> None:
    """Put `layer` over `values`, item by item for keyed variables."""
    for variable, value in layer.items():
        if isinstance(value, dict) and isinstance(values.get(variable), dict):
            values[variable] = values[variable] | value
        else:
            values[variable] = value


def _empty_values(policy: CompiledPolicy, registry: ProducerRegistry) -> dict[SignalKey, Any]:
    """What producers that declare one give a post with nothing in it, for values not pinned."""
    computed: dict[SignalKey, Any] = {}
    for asked in policy.asks.values():
        if asked.producer not in registry:
            continue
        empty = registry.traits(asked.producer).empty(asked.request)
        if empty is not NO_EMPTY:
            computed[(asked.producer, asked.request)] = empty
    return computed


def _computed_from_post(
    policy: CompiledPolicy, post: Post, registry: ProducerRegistry
) -> dict[SignalKey, Any]:
    """Values of the policy's consumer producers that read only the post, computed on it."""
    by_producer: dict[str, set[Hashable]] = {}
    for asked in policy.asks.values():
        by_producer.setdefault(asked.producer, set()).add(asked.request)
    computed: dict[SignalKey, Any] = {}
    for name, requests in by_producer.items():
        producer = registry.get(name) if name in registry else None
        if producer is None or producer.placement is not Placement.CONSUMER:
            continue
        if not producer.inputs <= POST_ONLY:
            continue
        [output] = producer.compute([ProducerJob(post, frozenset(requests))])
        if isinstance(output, Exception):  # the rule reading it says "not computed"
            continue
        values = as_output(output).values
        had = [r for r in requests if not isinstance(values[r], Unavailable)]
        computed |= {(name, request): values[request] for request in had}
    return computed


def compare(case: TestCase, decision: Decision) -> list[str]:
    """Lines `field: expected X, got Y` for each expected field that differs."""
    expect = case.expect
    checks: list[tuple[str, Any, Any]] = [("action", expect.action.value, decision.action.value)]
    if "queue" in expect.model_fields_set:
        checks.append(("queue", expect.queue, decision.queue))
    if expect.priority is not None:
        checks.append(("priority", expect.priority, decision.priority))
    if expect.rules is not None:
        checks.append(("rules", expect.rules, decision.rule_ids))
    errors = sorted(error.id for error in decision.rule_errors)
    checks.append(("errors", sorted(expect.errors), errors))
    lines = [_line(name, want, got) for name, want, got in checks if want != got]
    if errors != sorted(expect.errors):
        lines += [f"  {error.id}: {error.error}" for error in decision.rule_errors]
    return lines


def _line(name: str, expected: Any, actual: Any) -> str:
    line = f"{name}: expected {_show(expected)}, got {_show(actual)}"
    if isinstance(expected, list) and isinstance(actual, list):
        missing = [item for item in expected if item not in actual]
        extra = [item for item in actual if item not in expected]
        parts = [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"unexpected {', '.join(extra)}"] if extra else []
        line += f" ({'; '.join(parts) or 'order differs'})"
    return line


def _show(value: Any) -> str:
    if value is None:
        return "no queue"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)
