"""`vlmod report` on hostile input: bounded records, one line per bad one, a clean terminal.

A bad record (too large, nested too deep, not JSON, not a decision) is skipped and named as
`FILE:LINE: reason`, and the report still covers the rest. Nothing a record holds may act on
the terminal that prints the report: no control byte, no escape sequence, no markup.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from click.testing import Result

from contracts.records import PolicyRef
from contracts.review import DecisionKind
from review.report_io import RecordLimits, read_decisions
from tests.report_helpers import decide, make_verdict, vlmod_report, write_jsonl

MIB = 1 << 20
OSC_TITLE = "\x1b]0;pwned\x07"  # sets the terminal's title
RED = "\x1b[31m"
HOSTILE = f"{OSC_TITLE} {RED}red\x1b[0m \x9b2J \u202eevil\nfake line\ttab"
CONTROL_BYTES = ("\x1b", "\x07", "\x9b", "\u202e")


def decision_line(post_id: str, **changes: object) -> str:
    """One decision upholding the verdict on `post_id`, as a JSONL line, fields changed."""
    record = decide(make_verdict(post_id), DecisionKind.UPHOLD).model_dump(mode="json")
    return json.dumps({**record, **changes})


@pytest.fixture
def verdicts(tmp_path: Path) -> str:
    """Verdicts on posts p0 and p1."""
    records = [make_verdict(f"p{n}").model_dump(mode="json") for n in range(2)]
    return write_jsonl(tmp_path / "v.jsonl", records)


def run_report(*args: str | Path) -> Result:
    """`vlmod report` with these arguments, as the CLI runner saw it."""
    return vlmod_report(*map(str, args))


def write_lines(path: Path, *lines: str) -> Path:
    """A file of these lines, each ended by a newline."""
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


# --- nesting ------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [65, 2_000, 100_000])
def test_a_record_nested_too_deep_is_one_line_and_the_report_still_prints(
    tmp_path: Path, verdicts: str, depth: int
) -> None:
    # 65 levels is past the bound; 2,000 and 100,000 are past json's own recursion limit.
    nested = "[" * (depth - 1) + "]" * (depth - 1)  # under the object: `depth` levels in all
    deep = decision_line("p1").replace('"note": null', f'"note": {nested}')
    assert '"note": [' in deep
    decisions = write_lines(tmp_path / "d.jsonl", decision_line("p0"), deep, decision_line("p1"))
    result = run_report("--decisions", decisions, "--verdicts", verdicts)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"{decisions}:2: nested more than 64 levels",
        f"{decisions}: skipped 1 bad record of 3",
    ]
    assert "2 decisions" in result.stdout
    assert "bad records skipped: 1 decisions" in result.stdout


def test_a_record_at_the_depth_bound_is_not_too_deep(tmp_path: Path, verdicts: str) -> None:
    nested = "[" * 63 + "]" * 63  # 64 levels with the object around it
    decisions = write_lines(tmp_path / "d.jsonl", decision_line("p0", note=json.loads(nested)))
    result = run_report("--decisions", decisions, "--verdicts", verdicts)
    assert result.stderr.startswith(f"{decisions}:1: note: Input should be a valid string")


# --- size ---------------------------------------------------------------------------------------


def test_a_line_over_the_limit_is_named_with_its_size_and_skipped(
    tmp_path: Path, verdicts: str
) -> None:
    big = decision_line("p1", note="x" * 3000)
    decisions = write_lines(tmp_path / "d.jsonl", decision_line("p0"), big, decision_line("p1"))
    result = run_report(
        "--decisions", decisions, "--verdicts", verdicts, "--max-record-bytes", "1000", "--json"
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"{decisions}:2: record of {len(big):,} bytes is over the 1,000-byte limit",
        f"{decisions}: skipped 1 bad record of 3",
    ]
    body = json.loads(result.stdout)
    assert (body["decisions"], body["skipped_records"]["decisions"]) == (2, 1)


def test_the_default_limit_is_one_mib_and_a_line_at_the_limit_is_read(
    tmp_path: Path, verdicts: str
) -> None:
    line = decision_line("p1", note="")
    at_limit = decision_line("p1", note="x" * (MIB - len(line)))
    over = decision_line("p1", note="x" * (MIB - len(line) + 1))
    assert (len(at_limit), len(over)) == (MIB, MIB + 1)
    decisions = write_lines(tmp_path / "d.jsonl", at_limit, over)
    result = run_report("--decisions", decisions, "--verdicts", verdicts)
    problems = result.stderr.splitlines()
    assert problems[0].startswith(f"{decisions}:1: note: String should have at most 4000")
    assert (
        problems[1] == f"{decisions}:2: record of 1,048,577 bytes is over the 1,048,576-byte limit"
    )


def test_a_long_line_is_skipped_without_being_held_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    with path.open("wb") as file:
        file.write(decision_line("p0").encode() + b"\n")
        file.write(b'{"note": "' + b"x" * (16 * MIB) + b'"}\n')
        file.write(decision_line("p1").encode() + b"\n")
    tracemalloc.start()
    try:
        read = read_decisions(str(path), None, RecordLimits(max_bytes=MIB))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [d.post_id for d in read.records] == ["p0", "p1"]
    assert read.problems == [
        f"{path}:2: record of {16 * MIB + 12:,} bytes is over the 1,048,576-byte limit"
    ]
    assert peak < 3 * MIB  # read whole, the 16 MiB line alone would be 16 MiB


def test_a_record_with_a_huge_number_of_bad_fields_is_a_short_line(
    tmp_path: Path, verdicts: str
) -> None:
    decisions = write_lines(tmp_path / "d.jsonl", decision_line("p0", rules=[1] * 200_000))
    result = run_report("--decisions", decisions, "--verdicts", verdicts)
    assert result.stderr.splitlines()[0] == (
        f"{decisions}:1: 200,000 fields are invalid, too many to name"
    )


def test_past_twenty_bad_records_only_their_count_is_shown(tmp_path: Path, verdicts: str) -> None:
    decisions = write_lines(tmp_path / "d.jsonl", decision_line("p0"), *["{oops"] * 25)
    result = run_report("--decisions", decisions, "--verdicts", verdicts)
    assert result.exit_code == 0, result.output
    problems = result.stderr.splitlines()
    assert len(problems) == 22
    assert problems[19].startswith(f"{decisions}:21: not JSON")
    assert problems[20:] == ["... and 5 more", f"{decisions}: skipped 25 bad records of 26"]


# --- the terminal -------------------------------------------------------------------------------


def hostile_sources(tmp_path: Path) -> tuple[str, str]:
    """A verdict and decisions whose ids, reason, note, signal and key carry escape sequences."""
    policy = PolicyRef(id=f"scams{RED}", version=3, sha256="a" * 64)
    verdict = make_verdict(
        "p1", rules=(f"rule{HOSTILE}",), labels={HOSTILE: 0.4}, reason=HOSTILE, policy=policy
    )
    decision = decide(verdict, DecisionKind.OVERTURN, note=HOSTILE).model_dump(mode="json")
    orphan = {**decision, "key": f"gone{OSC_TITLE}"}
    decisions = write_jsonl(tmp_path / "d.jsonl", [decision, orphan])
    return decisions, write_jsonl(tmp_path / "v.jsonl", [verdict.model_dump(mode="json")])


def test_escape_sequences_in_records_are_shown_not_sent_to_the_terminal(tmp_path: Path) -> None:
    decisions, verdicts = hostile_sources(tmp_path)
    result = run_report("--decisions", decisions, "--verdicts", verdicts)
    assert result.exit_code == 0, result.output
    for byte in CONTROL_BYTES:
        assert byte not in result.output
    assert "\\x1b]0;pwned\\x07 \\x1b[31mred\\x1b[0m \\x9b2J \\u202eevil\\nfake line\\ttab" in (
        result.stdout
    )
    assert not any(line.startswith("fake line") for line in result.stdout.splitlines())
    assert "policy scams\\x1b[31m" in result.stdout
    assert "keys gone\\x1b]0;pwned\\x07" in result.stdout


def test_json_output_escapes_control_characters_and_keeps_the_exact_text(tmp_path: Path) -> None:
    decisions, verdicts = hostile_sources(tmp_path)
    result = run_report("--decisions", decisions, "--verdicts", verdicts, "--json")
    assert result.exit_code == 0, result.output
    assert result.stdout.isascii()
    for byte in CONTROL_BYTES:
        assert byte not in result.stdout
    rule = json.loads(result.stdout)["policies"][f"scams{RED}"]["rules"][f"rule{HOSTILE}"]
    assert rule["overturn_notes"] == [HOSTILE]


def test_html_output_holds_no_control_characters(tmp_path: Path) -> None:
    decisions, verdicts = hostile_sources(tmp_path)
    page = tmp_path / "r.html"
    result = run_report("--decisions", decisions, "--verdicts", verdicts, "--html", page)
    assert result.exit_code == 0, result.output
    text = page.read_text()
    for byte in CONTROL_BYTES:
        assert byte not in text
        assert byte not in result.output
    assert "\\x1b]0;pwned\\x07" in text


def test_markup_in_records_is_printed_literally(tmp_path: Path) -> None:
    rule, note = "[bold red]boom[/]", "[link=https://evil.example]click[/link] :warning:"
    verdict = make_verdict("p1", rules=(rule,), reason="[blink]x[/blink]")
    decision = decide(verdict, DecisionKind.OVERTURN, note=note).model_dump(mode="json")
    decisions = write_jsonl(tmp_path / "d.jsonl", [decision])
    verdicts = write_jsonl(tmp_path / "v.jsonl", [verdict.model_dump(mode="json")])
    result = run_report("--decisions", decisions, "--verdicts", verdicts)
    assert result.exit_code == 0, result.output
    for text in (rule, note, "[blink]x[/blink]"):
        assert text in result.stdout


def test_an_escape_in_a_file_name_is_shown_on_stderr(tmp_path: Path, verdicts: str) -> None:
    decisions = write_lines(tmp_path / f"d{RED}.jsonl", decision_line("p0"), "{oops")
    result = run_report("--decisions", decisions, "--verdicts", verdicts)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stderr
    assert result.stderr.startswith(f"{tmp_path}/d\\x1b[31m.jsonl:2: not JSON")
