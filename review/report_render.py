"""`vlmod report`'s outputs: the same tables as text and as HTML with plots, and the JSON form.

Every text taken from records (rule ids, reasons, notes, policy ids, keys) goes through
`printable` before it is shown: control characters, and with them ANSI and OSC escape
sequences, appear as escapes such as `\\x1b` instead of acting on the reader's terminal. Text is
printed as it is, never as rich or click markup. The JSON form keeps the exact strings, which
`json.dumps` escapes. The HTML is one standalone page: every text escaped by jinja2's
autoescape, plots inline as SVG whose text matplotlib escapes, no script. jinja2 and
matplotlib come with the review extra.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.errors import ModerationError
from review.report import (
    PolicyQuality,
    QualityReport,
    ShadowQuality,
    SignalQuality,
    Tally,
)

EXTRA_HINT = "install the review extra: pip install 'vlm-moderation[review]'"
# C0 and C1 controls and DEL (ESC starts ANSI and OSC sequences, BEL ends OSC ones), the line
# and paragraph separators, the bidi marks and overrides that reorder what a terminal shows,
# and lone surrogates, which cannot be encoded to print at all.
UNPRINTABLE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)


def printable(text: str) -> str:
    """`text` with every UNPRINTABLE character written as its Python escape, e.g. `\\x1b`."""
    return UNPRINTABLE.sub(lambda match: ascii(match.group())[1:-1], text)


@dataclass(frozen=True)
class Table:
    """Rows of text cells under headers; the first column names what the row is about."""

    title: str
    headers: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]


@dataclass(frozen=True)
class Section:
    """What the report says about one policy id."""

    policy: str
    summary: str
    tables: list[Table]


RULE_HEADERS = ("rule", "decided", "upheld", "overturned", "escalated", "precision", "overturn")
SIGNAL_HEADERS = ("signal", "samples", "upheld", "ECE", "threshold", "precision", "support")
SHADOW_HEADERS = ("shadow rule", "decided", "upheld", "overturned", "escalated", "precision")
AGREEMENT_HEADERS = ("queue", "pairs", "agreed", "observed", "chance", "kappa")
GOLDEN_HEADERS = ("reviewer", "answered", "right", "accuracy")
REVIEWERS = "(reviewers)"  # the reviewers' section's name: no policy id has parentheses


def report_sections(report: QualityReport) -> list[Section]:
    """One section per policy id: a summary line, then its rules, signals and shadow tables."""
    return [
        _printable_section(policy_id, _summary(report, policy_id), _tables(report, policy_id))
        for policy_id in sorted({*report.policies, *report.signals, *report.shadow})
    ]


def reviewer_section(report: QualityReport) -> Section | None:
    """Agreement per queue and golden accuracy per reviewer, or None when there is neither."""
    agreement = [
        (queue, str(a.pairs), str(a.agreed), _rate(a.observed), _rate(a.expected), _rate(a.kappa))
        for queue, a in sorted(report.agreement.items())
    ]
    golden = [
        (reviewer, str(g.answered), str(g.correct), _rate(g.accuracy))
        for reviewer, g in sorted(report.golden.items())
    ]
    if not agreement and not golden:
        return None
    tables = [
        Table("blind first and second reviews (Cohen's kappa)", AGREEMENT_HEADERS, agreement),
        Table("golden tasks", GOLDEN_HEADERS, golden),
    ]
    pairs = sum(a.pairs for a in report.agreement.values())
    answers = sum(g.answered for g in report.golden.values())
    summary = f"reviewers: {pairs} task(s) reviewed twice, {answers} golden answer(s)"
    return _printable_section(REVIEWERS, summary, [t for t in tables if t.rows])


def _printable_section(policy_id: str, summary: str, tables: list[Table]) -> Section:
    """A section whose texts are printable; `policy` stays the id, to look the policy up."""
    shown = [
        Table(printable(t.title), t.headers, [tuple(map(printable, row)) for row in t.rows])
        for t in tables
    ]
    return Section(policy_id, printable(summary), shown)


def _summary(report: QualityReport, policy_id: str) -> str:
    """The policy's totals in one line."""
    policy = report.policies.get(policy_id)
    if policy is None:
        return f"policy {policy_id}: no decision joined its verdicts"
    t = policy.totals
    return (
        f"policy {policy_id} (versions {', '.join(sorted(policy.versions))}): {t.decided} "
        f"decided, {t.upheld} upheld, {t.overturned} overturned, {t.escalated} escalated; "
        f"precision {_rate(t.precision)}, overturn rate {_rate(t.overturn_rate)}"
    )


def _tables(report: QualityReport, policy_id: str) -> list[Table]:
    """The policy's tables that have rows: rules, reasons, notes, signals, shadow rules."""
    tables = [
        *_rule_tables(report.policies.get(policy_id)),
        _signal_table(report, policy_id),
        _shadow_table(report.shadow.get(policy_id), policy_id),
    ]
    return [table for table in tables if table.rows]


def _rule_tables(policy: PolicyQuality | None) -> list[Table]:
    """Outcomes per rule, the rules' reasons, and reviewers' notes on overturns."""
    rules = sorted(policy.rules.items()) if policy is not None else []
    outcomes = [(rule, *_tally_cells(q), _rate(q.overturn_rate)) for rule, q in rules]
    notes = [(rule, note) for rule, q in rules for note in q.overturn_notes]
    return [
        Table("rules", RULE_HEADERS, outcomes),
        Table("reasons", ("rule", "reason"), [(rule, q.reason or "") for rule, q in rules]),
        Table("notes on overturns", ("rule", "note"), notes),
    ]


def _signal_table(report: QualityReport, policy_id: str) -> Table:
    """Calibration and the threshold pick per signal."""
    signals = sorted(report.signals.get(policy_id, {}).items())
    title = f"signals (threshold: the lowest reaching precision {report.target_precision:g})"
    return Table(title, SIGNAL_HEADERS, [(name, *_signal_cells(q)) for name, q in signals])


def _shadow_table(shadow: ShadowQuality | None, policy_id: str) -> Table:
    """The shadow policy's rules on decided posts, its agreement in the title."""
    if shadow is None:
        return Table("", SHADOW_HEADERS, [])
    title = (
        f"shadow {policy_id} (versions {', '.join(sorted(shadow.versions))}): {shadow.scored} "
        f"scored, {shadow.unscored} undecided, action agreement {_rate(shadow.action_agreement)}"
    )
    rows = [(rule, *_tally_cells(q)) for rule, q in sorted(shadow.rules.items())]
    # A shadow that matched nothing on decided posts still shows its agreement line.
    return Table(title, SHADOW_HEADERS, rows or [("(none)", *[""] * (len(SHADOW_HEADERS) - 1))])


def _tally_cells(tally: Tally) -> tuple[str, ...]:
    """decided, upheld, overturned, escalated and precision as cells."""
    counts = (tally.decided, tally.upheld, tally.overturned, tally.escalated)
    return (*(str(c) for c in counts), _rate(tally.precision))


def _signal_cells(quality: SignalQuality) -> tuple[str, ...]:
    """samples, upheld, ECE and the threshold pick as cells."""
    pick = quality.threshold
    return (
        str(quality.samples),
        str(quality.positives),
        _rate(quality.ece),
        "unreachable" if pick.threshold is None else f"{pick.threshold:.3f}",
        _rate(pick.precision),
        str(pick.support),
    )


def _rate(value: float | None) -> str:
    """Three decimals, or `-` when there is nothing to divide."""
    return "-" if value is None else f"{value:.3f}"


def render_json(report: QualityReport) -> str:
    """The report's JSON form, indented; ASCII only, so no control byte reaches a terminal."""
    return json.dumps(report.as_dict(), indent=2, ensure_ascii=True)


def render_text(report: QualityReport) -> str:
    """Aligned plain-text tables, one block per policy id."""
    blocks = [_text_section(section) for section in _all_sections(report)]
    blocks.append(_footer(report))
    return "\n\n".join(blocks)


def _all_sections(report: QualityReport) -> list[Section]:
    """The policies' sections, then the reviewers' when there is one."""
    reviewers = reviewer_section(report)
    return [*report_sections(report), *([reviewers] if reviewers else [])]


def _text_section(section: Section) -> str:
    """The summary line, then each table indented under its title."""
    parts = [section.summary]
    for table in section.tables:
        rows = [table.headers, *table.rows]
        widths = [max(len(row[i]) for row in rows) for i in range(len(table.headers))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
        ]
        parts.append("\n".join(f"    {line.rstrip()}" for line in [table.title, *lines]))
    return "\n".join(parts)


def _footer(report: QualityReport) -> str:
    """Counts read, bad records skipped, and decisions that joined no verdict."""
    shown = ", ".join(report.unmatched_keys[:5])
    unmatched = len(report.unmatched_keys)
    skipped = ", ".join(f"{n} {what}" for what, n in sorted(report.skipped_records.items()) if n)
    return printable(
        f"{report.decisions} decisions ({report.superseded_decisions} superseded by a later one), "
        f"{report.verdicts} verdicts"
        + (
            f"; {report.awaiting_final} key(s) awaiting a final decision"
            if report.awaiting_final
            else ""
        )
        + (f"; bad records skipped: {skipped}" if skipped else "")
        + (
            f"; {report.replay_qa_decisions} on replay-QA tasks (for vlmod replay)"
            if report.replay_qa_decisions
            else ""
        )
        + f"; unmatched decisions: {unmatched}"
        + (f" (keys {shown}{', ...' if unmatched > 5 else ''})" if unmatched else "")
    )


class RenderUnavailable(ModerationError):
    """An optional package the HTML report needs is not installed; the reason names the extra."""


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vlmod report</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
caption{text-align:left;font-weight:bold;padding:.3rem 0}
th,td{border:1px solid #ccc;padding:.2rem .6rem;text-align:left}
figure{display:inline-block;margin:0 1rem 1rem 0;vertical-align:top}
</style></head><body>
<h1>Rule and signal quality from reviewer decisions</h1>
<p>{{ footer }}</p>
{% for section in sections %}<section>
<h2>{{ section.policy | printable }}</h2>
<p>{{ section.summary }}</p>
{% for table in section.tables %}<table><caption>{{ table.title }}</caption>
<tr>{% for header in table.headers %}<th>{{ header }}</th>{% endfor %}</tr>
{% for row in table.rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% endfor %}{% for svg in plots[section.policy] %}<figure>{{ svg }}</figure>{% endfor %}
</section>
{% endfor %}</body></html>
"""


def render_html(report: QualityReport) -> str:
    """A standalone page: the text report's tables and SVG plots, all text escaped, no script."""
    try:
        import jinja2
    except ImportError as error:
        raise RenderUnavailable(f"the HTML report needs jinja2; {EXTRA_HINT}") from error
    sections = _all_sections(report)
    plots = {
        section.policy: [] if section.policy == REVIEWERS else _plots(report, section.policy)
        for section in sections
    }
    environment = jinja2.Environment(autoescape=True)
    environment.filters["printable"] = printable
    page = environment.from_string(PAGE)
    return page.render(sections=sections, plots=plots, footer=_footer(report))


def _plots(report: QualityReport, policy_id: str) -> list[Any]:
    """Inline SVGs for one policy id: precision per rule, then one reliability diagram a signal."""
    svgs = []
    policy = report.policies.get(policy_id)
    if policy is not None and policy.rules:
        # Printable here too: matplotlib's missing-glyph warning would echo a raw ESC to stderr.
        precision = {
            printable(rule): q.precision or 0.0 for rule, q in sorted(policy.rules.items())
        }
        title = printable(policy_id)
        svgs.append(inline_svg(f"{policy_id}/rules", _precision_figure, title, precision))
    for name, quality in sorted(report.signals.get(policy_id, {}).items()):
        figure = inline_svg(f"{policy_id}/{name}", _reliability_figure, printable(name), quality)
        svgs.append(figure)
    return svgs


def inline_svg(salt: str, draw: Callable[..., Any], *args: Any) -> Any:
    """The figure `draw(*args)` makes, as SVG markup that is safe to place inline."""
    try:
        import matplotlib
        from markupsafe import Markup
    except ImportError as error:
        raise RenderUnavailable(f"the HTML report needs matplotlib; {EXTRA_HINT}") from error
    buffer = io.StringIO()
    # Text stays <text> that matplotlib escapes, `$` is no mathtext, and ids differ per figure.
    with matplotlib.rc_context(
        {"svg.fonttype": "none", "text.parse_math": False, "svg.hashsalt": salt}
    ):
        draw(*args).savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    return Markup(re.sub(r"<!--.*?-->", "", svg[svg.index("<svg") :], flags=re.DOTALL))


def _precision_figure(policy_id: str, precision: dict[str, float]) -> Any:
    """Horizontal bars: each rule's precision on decided verdicts."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 1.2 + 0.35 * len(precision)), layout="constrained")
    axes = figure.add_subplot()
    bars = axes.barh(list(precision), list(precision.values()), color="#4c72b0")
    axes.bar_label(bars, fmt="%.2f", padding=3)
    axes.invert_yaxis()  # first rule on top, as in the table
    axes.set(xlim=(0, 1), xlabel="precision (upheld / decided)", title=f"{policy_id}: rules")
    return figure


def _reliability_figure(name: str, quality: SignalQuality) -> Any:
    """Observed upheld rate against mean predicted probability, per non-empty bin."""
    from matplotlib.figure import Figure

    points = [
        (b.mean_predicted, b.observed_rate)
        for b in quality.bins
        if b.mean_predicted is not None and b.observed_rate is not None
    ]
    figure = Figure(figsize=(4, 4), layout="constrained")
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="calibrated")
    axes.plot([x for x, _ in points], [y for _, y in points], marker="o", label="observed")
    title = f"{name} (ECE {_rate(quality.ece)})"
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted p", ylabel="upheld", title=title)
    axes.legend(loc="upper left")
    return figure
