"""Histories for replay tests, built from real policies' requests (not from the pipeline).

A post's record keys each value by the producer and `request_key` of the request that the
policy's `asks` give for it, as the pipeline records them; its verdicts are the policy's own
decisions on the same values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from contracts.history import PostRecord, RecordedValue
from contracts.producers import request_key
from contracts.records import Action, Verdict
from contracts.review import DecisionKind, ReviewDecision
from pipelines.producer_registry import producer_registry
from policies.compiled import CompiledPolicy
from policies.loader import load_policy
from policies.scope import PostScope

START = datetime(2026, 11, 1, tzinfo=UTC)


def compile_text(tmp_path: Path, name: str, text: str) -> CompiledPolicy:
    """A policy compiled from YAML text written to `tmp_path/name`."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return load_policy(path, registry=producer_registry())


def record_of(
    policy: CompiledPolicy,
    post: Mapping[str, Any],
    values: Mapping[str, Any],
    unavailable: Mapping[str, str] | None = None,
    truncated: bool = False,
) -> PostRecord:
    """A record of `post` holding `values` by the policy's dotted names (`labels.weapon`)."""
    recorded = []
    for (variable, item), asked in policy.asks.items():
        name = variable if item is None else f"{variable}.{item}"
        key = {"producer": asked.producer, "request": request_key(asked.request)}
        if name in values:
            recorded.append(RecordedValue(**key, value=values[name]))
        elif unavailable and name in unavailable:
            recorded.append(RecordedValue(**key, unavailable=unavailable[name]))
    return PostRecord(post=dict(post), truncated=truncated, values=recorded)


def decided(
    policy: CompiledPolicy, record: PostRecord, *, at: datetime = START, with_record: bool = True
) -> Verdict:
    """`policy`'s verdict on the record's values, carrying the record when asked."""
    view = policy.view(
        {(p, r): v for p, r, v in _requests(policy, record)},
        {(p, r): v.unavailable for p, r, v in _requests(policy, record, raw=True) if v.unavailable},
    )
    decision = policy.evaluate(PostScope(record.post, truncated=record.truncated), view)
    verdict = decision.to_verdict(record.post["id"])
    update: dict[str, Any] = {"processed_at": at}
    if with_record:
        update["record"] = record
    return verdict.model_copy(update=update)


def _requests(policy: CompiledPolicy, record: PostRecord, raw: bool = False) -> list[Any]:
    by_key = {request_key(a.request): (a.producer, a.request) for a in policy.asks.values()}
    found = []
    for value in record.values:
        producer, request = by_key[value.request]
        if raw:
            found.append((producer, request, value))
        elif value.unavailable is None:
            found.append((producer, request, value.value))
    return found


def review(verdict: Verdict, final: Action, *, at: datetime = START) -> ReviewDecision:
    """A reviewer's decision on `verdict` ending in `final`: uphold when it is the verdict's."""
    kind = DecisionKind.UPHOLD if final is verdict.action else DecisionKind.OVERTURN
    return ReviewDecision(
        key=verdict.key,
        post_id=verdict.post_id,
        policy=verdict.policy,
        rules=[rule.id for rule in verdict.matched_rules],
        queue=verdict.queue or "sample",
        reviewer="ana",
        decision=kind,
        action=final,
        decided_at=at + timedelta(hours=1),
    )


def write_jsonl(path: Path, records: Sequence[Verdict | ReviewDecision]) -> str:
    """The records as JSONL; returns the path as text."""
    path.write_text("".join(r.model_dump_json() + "\n" for r in records))
    return str(path)


def vlmod_replay(*args: str | Path) -> Any:
    """`vlmod replay` through the CLI runner; never a traceback."""
    from cli.main import app

    result = CliRunner().invoke(app, ["replay", *map(str, args)])
    assert "Traceback" not in result.output, result.output
    return result


def replay_json(*args: str | Path) -> dict[str, Any]:
    """`vlmod replay --json`'s report; the command must succeed."""
    result = vlmod_replay(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
