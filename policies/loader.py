"""Load policy files and directories: read safely, validate, compile, or refuse with positions."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from contracts.producers import ProducerRegistry
from policies.compiled import CompiledPolicy
from policies.compiler import compile_policy, schema_problems
from policies.exceptions import PolicyInvalid, Problem
from policies.expressions import ExpressionLimits
from policies.policy_set import PolicySet, policy_slot
from policies.schema import Mode, TestCase, TestFile
from policies.yamlsource import Mark, YamlLimits, read_yaml

POLICY_SUFFIXES = (".yaml", ".yml")
TESTS_SUFFIXES = (".tests.yaml", ".tests.yml")


def is_policy_file(path: Path) -> bool:
    """A YAML file that is not a `*.tests.yaml` companion."""
    name = path.name
    return name.endswith(POLICY_SUFFIXES) and not name.endswith(TESTS_SUFFIXES)


def read_bytes(path: Path, limits: YamlLimits) -> bytes:
    """The file's bytes, refusing oversized files before reading them."""
    label = str(path)
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            message = f"file is {size} bytes, over the {limits.max_bytes} limit"
            raise PolicyInvalid([Problem(label, 1, 1, message)])
        return path.read_bytes()
    except OSError as exc:
        raise PolicyInvalid([Problem(label, 1, 1, f"cannot read: {exc.strerror}")]) from exc


@dataclass(frozen=True)
class LoadedPolicy:
    """A compiled policy and where its `id:` is, to point at when another file repeats the id."""

    policy: CompiledPolicy
    id_at: Mark


def load_policy(
    path: str | Path,
    *,
    yaml_limits: YamlLimits | None = None,
    expression_limits: ExpressionLimits | None = None,
    registry: ProducerRegistry | None = None,
) -> CompiledPolicy:
    """Read, validate and compile one policy file; raise PolicyInvalid with every problem.

    `registry` names the producers `signals:` may use (default: the model's own).
    """
    return read_policy(
        path, yaml_limits=yaml_limits, expression_limits=expression_limits, registry=registry
    ).policy


def read_policy(
    path: str | Path,
    *,
    yaml_limits: YamlLimits | None = None,
    expression_limits: ExpressionLimits | None = None,
    registry: ProducerRegistry | None = None,
) -> LoadedPolicy:
    """`load_policy`, keeping where the file's `id:` is (for `repeated_ids`)."""
    path = Path(path)
    yaml_limits = yaml_limits or YamlLimits()
    raw = read_bytes(path, yaml_limits)
    doc = read_yaml(str(path), raw, yaml_limits)
    policy = compile_policy(doc, hashlib.sha256(raw).hexdigest(), expression_limits, registry)
    return LoadedPolicy(policy, doc.key_where(("id",)))


def repeated_ids(loaded: Sequence[LoadedPolicy]) -> list[Problem]:
    """A problem at each `id:` that an earlier file of its directory already took in its mode.

    One directory is one policy set (`load_policy_dir`): the same id in two directories, or in
    an active and a shadow policy, is fine. The problem names both files' `id:` positions.
    """
    first: dict[tuple[Path, str, Mode], LoadedPolicy] = {}
    problems = []
    for entry in loaded:
        policy = entry.policy
        key = (Path(policy.source).resolve().parent, *policy_slot(policy))
        taken = first.setdefault(key, entry)
        if taken is not entry:
            there = f"{taken.policy.source}:{taken.id_at.line}:{taken.id_at.col}"
            mode = policy.mode.value
            message = (
                f"{mode} policy {policy.ref.id!r} is already defined at {there}; "
                f"one {mode} policy per id"
            )
            problems.append(Problem(policy.source, entry.id_at.line, entry.id_at.col, message))
    return problems


def policy_files(directory: str | Path) -> list[Path]:
    """The policy files directly inside `directory`, sorted by name."""
    return sorted(p for p in Path(directory).iterdir() if p.is_file() and is_policy_file(p))


def load_policy_dir(
    directory: str | Path,
    *,
    require_active: bool = True,
    registry: ProducerRegistry | None = None,
) -> PolicySet:
    """Load every policy in `directory`; refuse the whole set if any file is invalid.

    A set with no active policy would commit every post without a verdict, so it is refused
    unless `require_active` is False (checking and testing tools).
    """
    found = _policy_files_or_refuse(Path(directory))
    problems: list[Problem] = []
    loaded = []
    for path in found:
        try:
            loaded.append(read_policy(path, registry=registry))
        except PolicyInvalid as exc:
            problems += exc.problems
    problems += repeated_ids(loaded)
    if problems:
        raise PolicyInvalid(problems)
    policy_set = PolicySet.build([entry.policy for entry in loaded])
    if require_active and not policy_set.active:
        raise PolicyInvalid([Problem(str(directory), 0, 0, _NO_ACTIVE)])
    return policy_set


_NO_ACTIVE = (
    "no active policy (only shadow ones): every post would be committed without a verdict; "
    "add a policy with `mode: active`"
)


def _policy_files_or_refuse(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise PolicyInvalid([Problem(str(directory), 0, 0, "not a directory")])
    found = policy_files(directory)
    if not found:
        message = f"no policy files ({', '.join('*' + s for s in POLICY_SUFFIXES)}) found"
        raise PolicyInvalid([Problem(str(directory), 0, 0, message)])
    return found


def companion_tests(path: str | Path, policy_id: str) -> list[TestCase]:
    """Test cases from `<stem>.tests.yaml` beside a policy file (none when absent)."""
    path = Path(path)
    stem = path.name.removesuffix(path.suffix)
    for suffix in TESTS_SUFFIXES:
        candidate = path.with_name(stem + suffix)
        if candidate.is_file():
            return _read_test_file(candidate, policy_id)
    return []


def is_tests_file(path: Path) -> bool:
    """A `<stem>.tests.yaml` companion file."""
    return path.name.endswith(TESTS_SUFFIXES)


def policy_beside(tests_path: Path) -> Path:
    """The policy file a `<stem>.tests.yaml` belongs to (`<stem>.yaml`)."""
    stem = tests_path.name
    for suffix in TESTS_SUFFIXES:
        stem = stem.removesuffix(suffix)
    for suffix in POLICY_SUFFIXES:
        if (tests_path.with_name(stem + suffix)).is_file():
            return tests_path.with_name(stem + suffix)
    return tests_path.with_name(stem + POLICY_SUFFIXES[0])


def _read_test_file(path: Path, policy_id: str) -> list[TestCase]:
    limits = YamlLimits()
    doc = read_yaml(str(path), read_bytes(path, limits), limits)
    try:
        tests = TestFile.model_validate(doc.data)
    except ValidationError as exc:
        raise PolicyInvalid(schema_problems(doc, exc, TestFile)) from exc
    if tests.policy is not None and tests.policy != policy_id:
        mark = doc.where(("policy",))
        message = (
            f"tests are for policy {tests.policy!r}, but the file beside them is {policy_id!r}"
        )
        raise PolicyInvalid([doc.problem(mark, message)])
    return tests.tests
