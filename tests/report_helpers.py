"""What the report tests share: verdicts and decisions on the `scams` policy (active v3, shadow
v4), and `vlmod report` run through the CLI runner."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer
from typer.testing import CliRunner

from cli import report as report_command
from contracts.records import (
    Action,
    MatchedRule,
    PolicyRef,
    ShadowVerdict,
    Signals,
    Verdict,
    verdict_key,
)
from contracts.review import DecisionKind, ReviewDecision

ACTIVE = PolicyRef(id="scams", version=3, sha256="a" * 64)
SHADOW = PolicyRef(id="scams", version=4, sha256="b" * 64)
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def make_verdict(
    post_id: str,
    *,
    rules: tuple[str, ...] = ("scam-link",),
    labels: dict[str, float] | None = None,
    answers: dict[str, float] | None = None,
    policy: PolicyRef = ACTIVE,
    action: Action = Action.REVIEW,
    reason: str | None = "links to a known scam",
) -> Verdict:
    return Verdict(
        post_id=post_id,
        key=verdict_key(post_id, policy.id, policy.version),
        action=action,
        queue="scam",
        policy=policy,
        matched_rules=[MatchedRule(id=r, action=action, reason=reason) for r in rules],
        signals=Signals(labels=labels or {}, answers=answers or {}),
        shadow=policy is SHADOW,
    )


def decide(
    verdict: Verdict,
    kind: DecisionKind,
    *,
    action: Action | None = None,
    note: str | None = None,
    at: datetime = T0,
) -> ReviewDecision:
    final = action or (Action.ALLOW if kind is DecisionKind.OVERTURN else verdict.action)
    return ReviewDecision(
        key=verdict.key,
        post_id=verdict.post_id,
        policy=verdict.policy,
        rules=[r.id for r in verdict.matched_rules],
        queue="scam",
        reviewer="ann",
        decision=kind,
        action=final,
        note=note,
        decided_at=at,
    )


def shadow_record(verdict: Verdict) -> dict:
    return ShadowVerdict(verdict=verdict, diff=None).model_dump(mode="json")


def cli() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so the command is `report` as under `vlmod`
    app.command()(report_command.report)
    return app


def vlmod_report(*args: str):
    result = CliRunner().invoke(cli(), ["report", *map(str, args)])
    assert "Traceback" not in result.output
    return result


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)
