"""`vlmod replay`'s outputs: the JSON form (keys sorted) and a readable summary."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from replay.metrics import PolicyChange, ReplayReport
from review.report_render import printable

RULE_HEADERS = ("rule", "before", "after", "added", "removed", "labelled", "precision", "95% CI")


def render_json(report: ReplayReport) -> str:
    """The report as JSON, keys sorted so the same replay always prints the same bytes."""
    return json.dumps(report.as_dict(), indent=2, sort_keys=True)


def summary_line(report: ReplayReport) -> str:
    """Posts read, and those not replayable with each reason's count; printable."""
    reasons = ", ".join(f"{why} ({n})" for why, n in sorted(report.reasons.items()))
    head = f"{report.posts} posts; not replayable: {report.not_replayable}"
    return printable(head + (f" ({reasons})" if reasons else ""))


def render_text(report: ReplayReport) -> str:
    """A summary line, then per candidate its transitions and a table of its rules."""
    blocks = [summary_line(report)]
    blocks += [_policy_block(name, report.policies[name]) for name in sorted(report.policies)]
    skipped = ", ".join(f"{n} {what}" for what, n in sorted(report.skipped_records.items()) if n)
    if skipped:
        blocks.append(printable(f"bad records skipped: {skipped}"))
    if report.to_queue is not None:
        blocks.append(queued_line(report.to_queue))
    return "\n\n".join(blocks)


def queued_line(queued: dict[str, Any]) -> str:
    """The replay-QA tasks written: how many, to which topics, from which strata."""
    topics = ", ".join(f"{topic} ({n})" for topic, n in queued["topics"].items())
    strata = "; ".join(
        f"{name}: " + ", ".join(f"{pair} {n}" for pair, n in pairs.items())
        for name, pairs in queued["strata"].items()
    )
    line = f"replay-QA tasks written: {queued['tasks']}" + (f" to {topics}" if topics else "")
    return printable(line + (f" ({strata})" if strata else ""))


def _policy_block(name: str, change: PolicyChange) -> str:
    """One candidate: counts, transitions, then its rules."""
    lines = [
        f"{name}: replayed {change.replayed}, changed {change.changed}, "
        f"overrides {change.overrides}, unlabelled exposure {change.unlabelled_exposure}, "
        f"not replayable {change.not_replayable_posts}, no recorded verdict {change.unrecorded}"
    ]
    moved = [f"{pair} {n}" for pair, n in sorted(change.transitions.items())]
    if moved:
        lines.append("    transitions: " + ", ".join(moved))
    for why, n in sorted(change.not_replayable.items()):
        lines.append(f"    not replayable: {why} ({n})")
    rows = [rule_row(rule, data) for rule, data in sorted(_rules(change).items())]
    if rows:
        lines += _table(RULE_HEADERS, rows)
    return "\n".join(map(printable, lines))


def _rules(change: PolicyChange) -> dict[str, dict[str, Any]]:
    return {rule: counts.as_dict() for rule, counts in change.rules.items()}


def rule_row(rule: str, data: dict[str, Any]) -> tuple[str, ...]:
    """A rule's cells: matches before and after, the change, labels, precision and interval."""
    ci = data["precision_after_ci"]
    before, after = data["precision_before"], data["precision_after"]
    return (
        rule,
        str(data["before"]),
        str(data["after"]),
        f"+{data['added']}",
        f"-{data['removed']}",
        str(data["labelled_after"]),
        f"{_rate(before)} -> {_rate(after)}",
        "-" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]",
    )


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _table(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Aligned columns, indented under the policy line."""
    table = [headers, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    return [
        "    " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
