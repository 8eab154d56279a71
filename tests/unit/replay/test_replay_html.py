"""`vlmod replay --html`: one standalone page, every text from the history escaped."""

from __future__ import annotations

import re

from contracts.records import Action
from tests.unit.replay.builders import (
    compile_text,
    decided,
    record_of,
    review,
    vlmod_replay,
    write_jsonl,
)

POLICY = """\
id: weapons
version: {version}
mode: active
signals:
  labels:
    weapon: "a weapon such as a gun or a knife"
default: allow
rules:
  - id: weapon-display
    when: labels.weapon > {threshold}
    action: review
    queue: weapons
"""
HOSTILE = "<script>alert(1)</script> \x1b]0;pwned\x07 \u202eevil"


def test_the_page_has_the_matrix_the_rules_the_plots_and_changed_posts_escaped(tmp_path):
    recorded = compile_text(tmp_path / "v1", "w.yaml", POLICY.format(version=1, threshold=0.8))
    compile_text(tmp_path / "v2", "w.yaml", POLICY.format(version=2, threshold=0.5))
    verdicts, decisions = [], []
    for n, score in enumerate([0.1, 0.6, 0.7, 0.9]):
        post = {"id": f"p{n}<b>", "text": HOSTILE}
        verdict = decided(recorded, record_of(recorded, post, {"labels.weapon": score}))
        verdicts.append(verdict)
        decisions.append(review(verdict, Action.REVIEW if score > 0.65 else Action.ALLOW))
    history = write_jsonl(tmp_path / "h.jsonl", verdicts)
    decided_file = write_jsonl(tmp_path / "d.jsonl", decisions)
    page = tmp_path / "replay.html"
    result = vlmod_replay(
        "--policy", tmp_path / "v2", "--history", history, "--decisions", decided_file,
        "--html", page,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "\x1b" not in html and "\u202e" not in html
    assert "\\x1b]0;pwned\\x07" in html
    assert "p1&lt;b&gt;" in html  # a changed post, its id escaped
    assert html.count("<svg") == 2  # matches, and precision with its interval
    # The matrix, row by recorded action: two posts between the thresholds go allow -> review.
    rows = {
        action: [int(n) for n in re.findall(r"<td[^>]*>\s*(\d+)</td>", cells)]
        for action, cells in re.findall(r"<tr><th>(\w+)</th>(.*?)</tr>", html, re.DOTALL)
        if action in ("allow", "review", "block", "escalate")
    }
    assert rows == {
        "allow": [1, 2, 0, 0],
        "review": [0, 1, 0, 0],
        "block": [0, 0, 0, 0],
        "escalate": [0, 0, 0, 0],
    }


def test_the_page_names_bad_records_skipped_and_the_replay_qa_tasks_written():
    from replay.html import render_html
    from replay.metrics import ReplayReport

    queued = {
        "tasks": 3,
        "topics": {"moderation.review.qa": 3},
        "strata": {"weapons": {"allow->review": 2, "review->allow": 1}},
    }
    report = ReplayReport(posts=5, skipped_records={"verdicts": 2, "decisions": 0}, to_queue=queued)
    html = render_html(report)
    assert "Bad records skipped: 2 verdicts</p>" in html
    assert "Replay-QA tasks written: 3</h2>" in html
    assert "<tr><td>moderation.review.qa</td><td>3</td></tr>" in html
    strata = re.findall(r"<tr><td>(\S+)</td><td>(\S+)</td><td>(\d+)</td></tr>", html)
    assert strata == [("weapons", "allow-&gt;review", "2"), ("weapons", "review-&gt;allow", "1")]
    assert "Replay-QA" not in render_html(ReplayReport(posts=5))
