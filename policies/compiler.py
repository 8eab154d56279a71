"""Turn a read YAML document into a CompiledPolicy, collecting every problem with its position.

Schema problems (pydantic) and cross-field problems (ids, queues, conditions) are gathered
from the same raw data independently, so one bad key never hides a bad condition elsewhere.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Hashable
from dataclasses import replace
from typing import Any, get_args, get_origin

from pydantic import BaseModel, Tag, TypeAdapter, ValidationError

from contracts.producers import ProducerRegistry, Variable
from contracts.records import PolicyRef
from contracts.registry import default_registry
from contracts.vlm import About, VlmTask
from policies.compiled import CompiledPolicy, CompiledRule, Requested
from policies.exceptions import PolicyInvalid, Problem
from policies.expressions import (
    Condition,
    Declared,
    ExpressionLimits,
    SignalRef,
    compile_condition,
)
from policies.patterns import PatternRegistry
from policies.schema import SIGNAL_NAME_PATTERN, TOPIC_PATTERN, PolicyFile, policy_file_model
from policies.yamlsource import Path, YamlDocument


def compile_policy(
    doc: YamlDocument,
    sha256: str,
    limits: ExpressionLimits | None = None,
    registry: ProducerRegistry | None = None,
) -> CompiledPolicy:
    """Validate and compile `doc`; raise PolicyInvalid listing all problems.

    `registry` says which producers `signals:` may name (default: `default_registry()`).
    """
    registry = registry or default_registry()
    problems: list[Problem] = []
    if not isinstance(doc.data, dict):
        raise PolicyInvalid([doc.problem(doc.where(()), "a policy file is a YAML mapping")])
    model = policy_file_model(registry)
    try:
        spec = model.model_validate(doc.data)
    except ValidationError as exc:
        spec = None
        problems += schema_problems(doc, exc, model)
    problems += _signal_name_problems(doc, registry)
    problems += _queue_problems(doc)
    problems += _rule_id_problems(doc)
    conditions, patterns, found = _compile_conditions(doc, limits, registry)
    problems += found
    if problems or spec is None:
        raise PolicyInvalid(problems)
    return _build(spec, conditions, patterns, sha256, doc, registry)


def schema_problems(
    doc: YamlDocument, error: ValidationError, model: type[BaseModel]
) -> list[Problem]:
    """Pydantic errors as positioned problems, one per location."""
    by_path: dict[Path, list[Any]] = {}
    for item in error.errors():
        by_path.setdefault(_data_path(doc.data, item["loc"]), []).append(item)
    problems = []
    for path, items in by_path.items():
        if len(items) > 1 and all(item["type"].endswith("_type") for item in items):
            wants = " or ".join(item["msg"].removeprefix("Input should be ") for item in items)
            problems.append(doc.problem(doc.where(path), f"{_dotted(path)}: should be {wants}"))
        else:
            problems.append(_schema_problem(doc, items[0], path, model))
    return problems


def _schema_problem(doc: YamlDocument, item: Any, path: Path, model: type[BaseModel]) -> Problem:
    loc = tuple(item["loc"])
    where = _dotted(path)
    if item["type"] == "extra_forbidden":
        key = str(path[-1])
        allowed = _allowed_keys(model, loc[:-1])
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = (
            f"; did you mean {close[0]!r}?" if close else f"; expected one of: {', '.join(allowed)}"
        )
        parent = f" in {_dotted(path[:-1])}" if path[:-1] else ""
        return doc.problem(doc.key_where(path), f"unknown key {key!r}{parent}{hint}")
    if item["type"] == "missing":
        owner = _data_path(doc.data, loc[:-1])
        inside = f" in {_dotted(owner)}" if owner else ""
        return doc.problem(doc.where(owner), f"missing required key {loc[-1]!r}{inside}")
    if item["type"] == "string_pattern_mismatch":
        pattern = item.get("ctx", {}).get("pattern", "")
        return doc.problem(doc.where(path), f"{where}: {item['input']!r} does not match {pattern}")
    if item["type"] == "enum":
        expected = item.get("ctx", {}).get("expected", "")
        return doc.problem(doc.where(path), f"{where}: {item['input']!r} is not one of {expected}")
    if item["type"] == "value_error":  # our own validators' words, without pydantic's prefix
        return doc.problem(doc.where(path), f"{where}: {item['msg'].removeprefix('Value error, ')}")
    return doc.problem(doc.where(path), f"{where}: {item['msg'].replace('Input', 'value')}")


def _data_path(data: Any, loc: tuple[Any, ...]) -> Path:
    """The steps of a pydantic location that exist in the data: union tags are dropped."""
    path: list[str | int] = []
    for step in loc:
        try:
            data = data[step]
        except (KeyError, IndexError, TypeError):
            continue
        path.append(step)
    return tuple(path)


def _dotted(path: Path) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step}"
    return text.lstrip(".") or "(file)"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    keyed = False  # the step before was a mapping: this step is one of its keys
    tagged: dict[str, type[BaseModel]] = {}  # a discriminated union's members, by tag
    for step in loc:
        if isinstance(step, int) or keyed:
            keyed = False
            continue
        if str(step) in tagged:  # pydantic names the union member it tried
            model, tagged = tagged[str(step)], {}
            continue
        field = model.model_fields.get(str(step))
        inner = _model_in(field.annotation) if field else None
        if field is None or inner is None:
            return []
        keyed = get_origin(field.annotation) is dict
        tagged = _tagged_models(field.annotation)
        model = inner
    return list(model.model_fields)


def _tagged_models(annotation: Any) -> dict[str, type[BaseModel]]:
    """The members of a tagged union inside `annotation` (`Annotated[Model, Tag(name)]`)."""
    found: dict[str, type[BaseModel]] = {}
    args = get_args(annotation)
    tags = [arg.tag for arg in args if isinstance(arg, Tag)]
    if tags and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        found[tags[0]] = args[0]
    for arg in args:
        found.update(_tagged_models(arg))
    return found


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _mapping(doc: YamlDocument, *path: str) -> dict[str, Any]:
    value: Any = doc.data
    for step in path:
        value = value.get(step) if isinstance(value, dict) else None
    return value if isinstance(value, dict) else {}


def _rules(doc: YamlDocument) -> list[tuple[int, dict[str, Any]]]:
    rules = doc.data.get("rules")
    if not isinstance(rules, list):
        return []
    return [(i, rule) for i, rule in enumerate(rules) if isinstance(rule, dict)]


def _signal_name_problems(doc: YamlDocument, registry: ProducerRegistry) -> list[Problem]:
    problems = []
    for producer in registry:
        if not any(variable.keyed for variable in producer.variables):
            continue
        for name in _mapping(doc, "signals", producer.name):
            if not re.fullmatch(SIGNAL_NAME_PATTERN, str(name)):
                mark = doc.key_where(("signals", producer.name, name))
                message = f"signal name {name!r} must match {SIGNAL_NAME_PATTERN}"
                problems.append(doc.problem(mark, message))
    return problems


def _queue_problems(doc: YamlDocument) -> list[Problem]:
    problems = []
    for name, topic in _mapping(doc, "queues").items():
        mark = doc.where(("queues", name))
        if topic is None or topic == "":
            mark = doc.key_where(("queues", name))
            message = (
                f"queue {name!r} has no topic; name one, or drop the entry for 'review.{name}'"
            )
            problems.append(doc.problem(mark, message))
        elif isinstance(topic, str) and not re.fullmatch(TOPIC_PATTERN, topic):
            problems.append(doc.problem(mark, f"topic {topic!r} is not a valid Kafka topic name"))
    return problems


def _rule_id_problems(doc: YamlDocument) -> list[Problem]:
    problems = []
    first_line: dict[str, int] = {}
    for index, rule in _rules(doc):
        rule_id = rule.get("id")
        if not isinstance(rule_id, str):
            continue
        mark = doc.where(("rules", index, "id"))
        if rule_id in first_line:
            message = f"rule id {rule_id!r} is used twice (first at line {first_line[rule_id]})"
            problems.append(doc.problem(mark, message))
        else:
            first_line[rule_id] = mark.line
    return problems


def declared_signals(doc: YamlDocument, registry: ProducerRegistry) -> Declared:
    """What the file's `signals:` declares, read leniently so conditions can be checked."""
    variables: dict[str, Variable] = {}
    items: dict[str, frozenset[str]] = {}
    for name, value in _mapping(doc, "signals").items():
        if name not in registry or value is None or value is False:
            continue
        producer = registry.get(name)
        for variable in producer.variables:
            variables[variable.name] = variable
            listed = _declared_items(producer, variable, value) if variable.keyed else None
            if listed is not None:
                items[variable.name] = listed
    known = {v.name: (p.name, v) for p in registry for v in p.variables}
    costs = {v.name: int(p.cost) for p in registry for v in p.variables}
    return Declared(variables, items, known, costs)


def _declared_items(producer: Any, variable: Variable, value: Any) -> frozenset[str] | None:
    """The items of `variable` the value declares: those its asks name when the value is valid
    (a `shieldgemma:` section names them under `policies`), else its keys or list items; None
    for an invalid structured section, whose keys are settings (its own error says what)."""
    try:
        asks = producer.asks(TypeAdapter(producer.config).validate_python(value))
    except (ValueError, TypeError):  # invalid: reported with the signals; read it leniently
        if isinstance(producer.config, type) and issubclass(producer.config, BaseModel):
            return None
        listed = value if isinstance(value, dict | list) else ()
        return frozenset(map(str, listed))
    return frozenset(str(a.item) for a in asks if a.variable == variable.name and a.item)


def _compile_conditions(
    doc: YamlDocument, limits: ExpressionLimits | None, registry: ProducerRegistry
) -> tuple[dict[int, Condition], PatternRegistry, list[Problem]]:
    declared = declared_signals(doc, registry)
    patterns = PatternRegistry()
    conditions: dict[int, Condition] = {}
    problems = []
    for index, rule in _rules(doc):
        source = rule.get("when")
        if not isinstance(source, str) or not source.strip():
            continue
        condition, findings = compile_condition(source, declared, limits, patterns)
        for offset, message in findings:
            mark = doc.inside_scalar(("rules", index, "when"), offset)
            problems.append(doc.problem(mark, message))
        if condition is not None:
            conditions[index] = condition
    problems += _text_scan_problems(doc, conditions, limits or ExpressionLimits())
    return conditions, patterns, problems


def _text_scan_problems(
    doc: YamlDocument, conditions: dict[int, Condition], limits: ExpressionLimits
) -> list[Problem]:
    """Refuse a policy whose `matches`/`contains` calls, all run on one post, pass the budget."""
    budget = limits.max_text_scans
    total = sum(len(condition.scans) for condition in conditions.values())
    if total <= budget:
        return []
    seen = 0
    for index, condition in sorted(conditions.items()):
        if seen + len(condition.scans) > budget:
            mark = doc.inside_scalar(("rules", index, "when"), condition.scans[budget - seen])
            message = (
                f"policy scans the post text {total} times per post, over the budget of "
                f"{budget} (max_text_scans); split it or merge patterns"
            )
            return [doc.problem(mark, message)]
        seen += len(condition.scans)
    return []


def _build(
    spec: PolicyFile,
    conditions: dict[int, Condition],
    patterns: PatternRegistry,
    sha256: str,
    doc: YamlDocument,
    registry: ProducerRegistry,
) -> CompiledPolicy:
    rules = [
        CompiledRule(
            id=rule.id,
            index=index,
            action=rule.action,
            queue=rule.queue,
            priority=rule.priority,
            reason=rule.reason,
            condition=conditions[index],
        )
        for index, rule in enumerate(spec.rules)
    ]
    asks, keyed = _asks(spec.signals, registry)
    return CompiledPolicy(
        ref=PolicyRef(id=spec.id, version=spec.version, sha256=sha256),
        mode=spec.mode,
        asks=asks,
        keyed=keyed,
        queues={name: topic for name, topic in spec.queues.items() if topic},
        rules=rules,
        default=spec.default,
        source=doc.file,
        tests=list(spec.tests),
        functions=patterns.functions,
    )


def _asks(
    signals: Any, registry: ProducerRegistry
) -> tuple[dict[SignalRef, Requested], dict[str, bool]]:
    """What each declared producer is asked for, by (variable, item), and which are keyed."""
    asks: dict[SignalRef, Requested] = {}
    keyed: dict[str, bool] = {}
    found_text: list[tuple[str, Hashable]] = []  # values that are text found in the post (OCR)
    for producer in registry:
        value = getattr(signals, producer.name, None)
        if value is None or value is False:
            continue
        for variable in producer.variables:
            keyed[variable.name] = variable.keyed
        for ask in producer.asks(value):
            asks[(ask.variable, ask.item)] = Requested(producer.name, ask.request, ask.needs)
            if registry.traits(producer.name).adds_text:
                found_text.append((producer.name, ask.request))
    return _post_tasks_read(asks, tuple(found_text)), keyed


def _post_tasks_read(
    asks: dict[SignalRef, Requested], found_text: tuple[tuple[str, Hashable], ...]
) -> dict[SignalRef, Requested]:
    """Model tasks about the whole post also read the text found in it (OCR), computed first."""
    if not found_text:
        return asks
    return {
        ref: replace(asked, needs=asked.needs + found_text) if _about_post(asked) else asked
        for ref, asked in asks.items()
    }


def _about_post(asked: Requested) -> bool:
    return isinstance(asked.request, VlmTask) and asked.request.about is About.POST
