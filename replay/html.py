"""`vlmod replay --html FILE`: the report as one standalone page, with plots.

Per candidate: its counts, the transition matrix (recorded action by replayed action), the
rules' matches before and after and their precision with Wilson intervals, as tables and as
inline SVG plots, and the first changed posts; then the bad records skipped and, with
`--to-queue`, the replay-QA tasks written by topic and by candidate and transition. Made as
`vlmod report --html` makes its page (`review.report_render`): every text escaped by jinja2's
autoescape, plots drawn by matplotlib with their text escaped, no script. jinja2 and
matplotlib come with the review extra.
"""

from __future__ import annotations

from typing import Any

from contracts.records import Action
from replay.metrics import PolicyChange, ReplayReport
from replay.render import RULE_HEADERS, rule_row
from review.report_render import EXTRA_HINT, RenderUnavailable, inline_svg, printable

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vlmod replay</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
caption{text-align:left;font-weight:bold;padding:.3rem 0}
th,td{border:1px solid #ccc;padding:.2rem .6rem;text-align:left}
td.same{color:#888}
figure{display:inline-block;margin:0 1rem 1rem 0;vertical-align:top}
</style></head><body>
<h1>What the candidate policies would have done to the history</h1>
<p>{{ summary }}</p>
{% for name, change, plots in policies %}<section>
<h2>{{ name | printable }}</h2>
<p>replayed {{ change.replayed }}, changed {{ change.changed }}, overrides {{ change.overrides }},
unlabelled exposure {{ change.unlabelled_exposure }}, not replayable
{{ change.not_replayable_posts }}, no recorded verdict {{ change.unrecorded }}</p>
<table><caption>Transitions: recorded action (rows) to replayed action (columns)</caption>
<tr><th></th>{% for after in actions %}<th>{{ after }}</th>{% endfor %}</tr>
{% for before in actions %}<tr><th>{{ before }}</th>{% for after in actions %}
<td{% if before == after %} class="same"{% endif %}>
{{- change.transitions.get(before + "->" + after, 0) }}</td>
{% endfor %}</tr>{% endfor %}</table>
{% if change.not_replayable %}<table><caption>Not replayable</caption>
<tr><th>reason</th><th>posts</th></tr>
{% for why, n in change.not_replayable | dictsort %}
<tr><td>{{ why | printable }}</td><td>{{ n }}</td></tr>{% endfor %}
</table>{% endif %}
<table><caption>Rules</caption>
<tr>{% for header in headers %}<th>{{ header }}</th>{% endfor %}</tr>
{% for row in rules[name] %}
<tr>{% for cell in row %}<td>{{ cell | printable }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% for svg in plots %}<figure>{{ svg }}</figure>{% endfor %}
{% if change.sample %}
<table><caption>Changed posts (the first {{ change.sample | length }})</caption>
<tr><th>post</th><th>before</th><th>after</th><th>rules added</th><th>rules removed</th>
<th>reviewer</th><th>text</th></tr>
{% for post in change.sample %}<tr><td>{{ post.post_id | printable }}</td>
<td>{{ post.before.value }}</td><td>{{ post.after.value }}</td>
<td>{{ post.added | join(", ") | printable }}</td>
<td>{{ post.removed | join(", ") | printable }}</td>
<td>{{ verdict(post.label) }}</td><td>{{ post.text | printable }}</td></tr>
{% endfor %}</table>{% endif %}
</section>
{% endfor %}{% if skipped %}<p>Bad records skipped: {{ skipped | printable }}</p>{% endif %}
{% if to_queue %}<section><h2>Replay-QA tasks written: {{ to_queue.tasks }}</h2>
<table><caption>Topics</caption><tr><th>topic</th><th>tasks</th></tr>
{% for topic, n in to_queue.topics.items() %}
<tr><td>{{ topic | printable }}</td><td>{{ n }}</td></tr>{% endfor %}</table>
<table><caption>Drawn by candidate and transition</caption>
<tr><th>candidate</th><th>transition</th><th>tasks</th></tr>
{% for name, pairs in to_queue.strata.items() %}{% for pair, n in pairs.items() %}
<tr><td>{{ name | printable }}</td><td>{{ pair }}</td><td>{{ n }}</td></tr>
{% endfor %}{% endfor %}</table></section>{% endif %}
</body></html>
"""


def render_html(report: ReplayReport) -> str:
    """A standalone page: the summary, each candidate's tables and plots, all text escaped."""
    try:
        import jinja2
    except ImportError as error:
        raise RenderUnavailable(f"the HTML report needs jinja2; {EXTRA_HINT}") from error
    from replay.render import summary_line

    names = sorted(report.policies)
    policies = [
        (name, report.policies[name], _plots(name, report.policies[name])) for name in names
    ]
    rules = {
        name: [rule_row(rule, counts.as_dict()) for rule, counts in sorted(change.rules.items())]
        for name, change, _ in policies
    }
    environment = jinja2.Environment(autoescape=True)
    environment.filters["printable"] = printable
    page = environment.from_string(PAGE)
    return page.render(
        summary=summary_line(report),
        policies=policies,
        rules=rules,
        headers=RULE_HEADERS,
        actions=[action.value for action in Action],
        verdict=_verdict,
        skipped=", ".join(f"{n} {what}" for what, n in sorted(report.skipped_records.items()) if n),
        to_queue=report.to_queue,
    )


def _verdict(label: Any) -> str:
    """What a reviewer made of the post: violating, not violating, escalated, or unseen."""
    if not label.seen:
        return "unseen"
    if label.violating is None:
        return "escalated"
    return "violating" if label.violating else "not violating"


def _plots(name: str, change: PolicyChange) -> list[Any]:
    """Matches before and after per rule, and precision before and after with its interval."""
    if not change.rules:
        return []
    rules = {printable(rule): counts.as_dict() for rule, counts in sorted(change.rules.items())}
    title = printable(name)
    svgs = [inline_svg(f"{name}/matches", _matches_figure, title, rules)]
    if any(data["precision_after"] is not None for data in rules.values()):
        svgs.append(inline_svg(f"{name}/precision", _precision_figure, title, rules))
    return svgs


def _matches_figure(title: str, rules: dict[str, dict[str, Any]]) -> Any:
    """Paired horizontal bars: each rule's matches in the history and in the replay."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 1.4 + 0.5 * len(rules)), layout="constrained")
    axes = figure.add_subplot()
    rows = range(len(rules))
    before = [data["before"] for data in rules.values()]
    after = [data["after"] for data in rules.values()]
    axes.barh([r - 0.2 for r in rows], before, height=0.4, color="#999999", label="recorded")
    axes.barh([r + 0.2 for r in rows], after, height=0.4, color="#4c72b0", label="replayed")
    axes.set_yticks(list(rows), list(rules))
    axes.invert_yaxis()
    axes.set(xlabel="posts matched", title=f"{title}: matches")
    axes.legend(loc="best")
    return figure


def _precision_figure(title: str, rules: dict[str, dict[str, Any]]) -> Any:
    """Precision before (grey) and after (blue, with its Wilson 95 % interval) per rule."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 1.4 + 0.5 * len(rules)), layout="constrained")
    axes = figure.add_subplot()
    labels = {"recorded": "recorded", "replayed": "replayed, Wilson 95 %"}
    for row, data in enumerate(rules.values()):
        if data["precision_before"] is not None:
            axes.plot(
                data["precision_before"], row - 0.15, "o", color="#999999",
                label=labels.pop("recorded", None),
            )  # fmt: skip
        if data["precision_after"] is not None:
            low, high = data["precision_after_ci"]
            after = data["precision_after"]
            axes.errorbar(
                after, row + 0.15, xerr=[[after - low], [high - after]], fmt="o",
                color="#4c72b0", label=labels.pop("replayed", None),
            )  # fmt: skip
    axes.set_yticks(range(len(rules)), list(rules))
    axes.invert_yaxis()
    axes.set(xlim=(0, 1), xlabel="precision (violating / labelled)", title=f"{title}: precision")
    axes.legend(loc="best")
    return figure
