"""`vlmod demo`'s stdout: ids, policy ids and rule names whole at 80 columns, no Ray lines."""

from __future__ import annotations

import io
import logging
import sys

from rich.console import Console

from demo.report import DemoReport, print_report
from demo.run import ray_output_off_stdout, spinner
from demo.samples import SampleMessage

POST_ID = "post-" + "0123456789abcdef" * 2 + "xyz"
POLICY_ID = "marketplace-listings"
RULE_ID = "counterfeit-luxury-watch-in-image"
DEAD_KEY = "dead-" + "f" * 35
LONG_ERROR = "; ".join(f"field{i}: value should be a valid string" for i in range(6))


def report() -> DemoReport:
    made = DemoReport(expected=2, verdicts_per_post=1)
    made.verdicts[POST_ID] = [
        {
            "post_id": POST_ID,
            "policy": {"id": POLICY_ID},
            "action": "escalate",
            "queue": "trust-and-safety",
            "matched_rules": [{"id": RULE_ID}, {"id": "second-rule"}],
        }
    ]
    made.dead_letters[DEAD_KEY] = {"stage": "validate", "error": LONG_ERROR}
    made.per_topic.update({"moderation.verdicts": 1, "moderation.dead-letter": 1})
    return made


def render(made: DemoReport, width: int = 80) -> str:
    samples = [SampleMessage(b"a", b"{}"), SampleMessage(b"b", b"x", malformed=True)]
    out = io.StringIO()
    print_report(Console(file=out, width=width, color_system=None), made, samples)
    return out.getvalue()


def last_column(text: str, title: str) -> str:
    """The text of the last column of the table under `title`, its lines joined."""
    table = text.split(title, 1)[1].split("└", 1)[0]
    cells = [line.split("│")[-2] for line in table.splitlines() if line.startswith("│")]
    return "".join(cell.strip() for cell in cells)


def test_a_40_character_post_id_appears_whole_at_80_columns():
    assert len(POST_ID) == 40
    text = render(report())
    assert POST_ID in text
    assert POLICY_ID in text
    assert DEAD_KEY in text
    assert "…" not in text, "nothing is cut with an ellipsis"
    assert max(len(line) for line in text.splitlines()) <= 80


def test_rule_names_and_errors_are_wrapped_never_cut():
    text = render(report())
    assert RULE_ID + "second-rule" in last_column(text, "Verdicts")
    error = last_column(text, "Dead letters")
    assert error.replace(" ", "") == LONG_ERROR.replace(" ", ""), "the whole reason, wrapped"
    assert "1/1 posts got verdicts, 1/1 malformed messages dead-lettered" in text


def test_markup_like_ids_and_reasons_are_shown_as_they_are():
    made = DemoReport(expected=1, verdicts_per_post=1)
    made.dead_letters["[bold]x[/]"] = {"stage": "decode", "error": "not JSON: [/oops]"}
    text = render(made)
    assert "[bold]x[/]" in text
    assert "[/oops]" in text


RAYLET_LINE = "A worker died or was killed while executing a task: killed by `ray.kill`"


def test_ray_driver_prints_stay_out_of_stdout_but_the_report_does_not(capsys, caplog):
    from ray._private.worker import print_to_stdstream  # how Ray prints `(raylet)` lines

    caplog.set_level(logging.INFO, logger="demo.run")
    console = Console(file=sys.stdout, color_system=None)
    with ray_output_off_stdout():
        print_to_stdstream(
            {"lines": [RAYLET_LINE], "pid": "raylet", "is_err": False}, ignore_prefix=False
        )
        console.print("the report")
    out = capsys.readouterr().out
    assert "raylet" not in out and RAYLET_LINE not in out
    assert "the report" in out
    assert f"(raylet) {RAYLET_LINE}" in caplog.text, "kept in the log, without colour codes"


def test_the_spinner_leaves_stdout_alone():
    console = Console(file=io.StringIO(), force_terminal=True)
    before = sys.stdout
    with spinner(console, "working..."):
        assert sys.stdout is before, "a rich Live would print Ray's lines into the console"


def _with_signals() -> DemoReport:
    made = DemoReport(expected=1, verdicts_per_post=1)
    made.verdicts["post-flyer"] = [
        {
            "post_id": "post-flyer",
            "policy": {"id": "spam-scams"},
            "action": "review",
            "queue": "scam",
            "matched_rules": [
                {"id": "scam-text-in-image", "evidence": {"ocr": "DM me on Telegram"}},
                {"id": "crypto-promo-image", "evidence": {"answers.crypto_promo": 0.91}},
            ],
            "signals": {"ocr": "DM me on\nTelegram", "nsfw": 0.013, "banks": {"known-bad": True}},
            "producers": [
                {"name": "banks", "ms": 2.0, "evidence": {"known-bad": {"distance": 12}}},
                {"name": "ocr", "ms": 80.0, "evidence": {}},
                {"name": "labels", "ms": 30.0, "evidence": {}},
            ],
        }
    ]
    return made


def test_rules_reading_the_random_model_are_marked_and_real_signals_get_their_table():
    samples = [SampleMessage(b"post-flyer", b"{}")]
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    print_report(console, _with_signals(), samples, random_model=True)
    text = out.getvalue()
    assert "crypto-promo-image (random weights)" in text
    assert "scam-text-in-image (random weights)" not in text, "OCR is real"
    table = text.split("Real signals", 1)[1]
    [row] = [line for line in table.splitlines() if line.startswith("│ post-flyer ")]
    assert 'ocr "DM me on Telegram"' in row and "nsfw 0.01" in row
    assert "banks: known-bad match (distance 12)" in row
    assert row.rstrip("│ ").endswith("82"), "the specialists' milliseconds, not the model's"


def test_a_real_model_marks_nothing():
    out = io.StringIO()
    print_report(Console(file=out, width=200), _with_signals(), [], random_model=False)
    assert "random weights" not in out.getvalue()
