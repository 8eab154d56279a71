"""What `vlmod demo` prints: verdicts, the specialists' real signals, dead letters, topic counts.

With a random-weight model, the report says which signals are real: the text, the CPU
specialists (nsfw, ocr, profanity, banks) and cheap producers are; the model's labels,
answers and caption are not, and every rule that read one is marked `(random weights)`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from demo.samples import SampleMessage
from operators.specialists.bank_names import IMAGE_HASHES
from pipelines.config import PipelineConfig

MODEL_VARIABLES = ("labels", "answers", "description", "embedding")
SPECIALISTS = ("banks", "nsfw", "ocr", "profanity", "profanity_ocr")
RANDOM_MARK = " (random weights)"
OCR_SHOWN = 40  # characters of OCR text shown in the table


@dataclass
class DemoReport:
    """What came out: verdicts by post, dead letters, and message counts per topic."""

    expected: int
    verdicts_per_post: int
    verdicts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dead_letters: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_topic: Counter[str] = field(default_factory=Counter)

    def resolved(self) -> int:
        """Posts with every active policy's verdict, plus dead-lettered messages."""
        done = sum(1 for v in self.verdicts.values() if len(v) >= self.verdicts_per_post)
        return done + len(self.dead_letters)

    @property
    def complete(self) -> bool:
        """True when every published message ended as verdicts or a dead letter."""
        return self.resolved() >= self.expected

    def add(self, topic: str, key: bytes | None, value: bytes, config: PipelineConfig) -> None:
        """Account for one output message."""
        self.per_topic[topic] += 1
        body = json.loads(value)
        if topic == config.topics.verdicts:
            self.verdicts.setdefault(body["post_id"], []).append(body)
        elif topic == config.topics.dead_letter:
            self.dead_letters[(key or b"?").decode(errors="replace")] = body


def print_report(
    console: Console,
    report: DemoReport,
    samples: list[SampleMessage],
    *,
    random_model: bool = False,
) -> None:
    """The verdict table, the real signals, the dead letters, counts per topic; ids never cut."""
    console.print(verdict_table(report, _contents(samples), random_model=random_model))
    if random_model:
        console.print(
            f"Rules marked{RANDOM_MARK} read the random-weight model's labels, answers or "
            "caption; every other value is real: the text, links, and the CPU specialists below."
        )
    if any(_specialist_signals(verdicts)[0] for verdicts in report.verdicts.values()):
        console.print(specialist_table(report))
    console.print(dead_letter_table(report))
    console.print(topic_table(report))
    well_formed = sum(1 for s in samples if not s.malformed)
    console.print(
        f"{len(report.verdicts)}/{well_formed} posts got verdicts, "
        f"{len(report.dead_letters)}/{len(samples) - well_formed} malformed messages dead-lettered"
    )


def verdict_table(
    report: DemoReport, contents: dict[str, str] | None = None, *, random_model: bool = False
) -> Table:
    """Each post's id (and what it holds) over one row per policy: action, queue, rules."""
    contents = contents or {}
    table = Table(title="Verdicts")
    table.add_column("post / policy", no_wrap=True, overflow="fold")
    for column in ("action", "queue", "matched rules"):
        table.add_column(column, overflow="fold")
    for post_id in sorted(report.verdicts):
        title = Text(post_id, style="bold")  # Text: ids are never read as markup
        title.append(f"  {contents[post_id]}" if post_id in contents else "", style="dim")
        table.add_row(title)
        verdicts = report.verdicts[post_id]
        for index, verdict in enumerate(verdicts):
            policy = Text("  " + verdict["policy"]["id"])
            cells = (verdict["action"], verdict["queue"] or "-", _rule_ids(verdict, random_model))
            table.add_row(policy, *map(Text, cells), end_section=index == len(verdicts) - 1)
    return table


def dead_letter_table(report: DemoReport) -> Table:
    """One row per dead letter: its key, the stage it failed at and the whole reason."""
    table = Table(title="Dead letters")
    table.add_column("key", no_wrap=True, overflow="fold")
    table.add_column("stage", no_wrap=True, overflow="fold")
    table.add_column("error", overflow="fold")
    for key, letter in sorted(report.dead_letters.items()):
        table.add_row(Text(key), Text(letter["stage"]), Text(letter["error"]))
    return table


def topic_table(report: DemoReport) -> Table:
    """Messages the demo read back from each topic."""
    table = Table(title="Messages per topic")
    table.add_column("topic", no_wrap=True, overflow="fold")
    table.add_column("messages", justify="right", no_wrap=True)
    for topic, count in sorted(report.per_topic.items()):
        table.add_row(Text(topic), str(count))
    return table


def _contents(samples: list[SampleMessage]) -> dict[str, str]:
    """`text only`, `text + 1 image`, ... for each well-formed sample post."""
    contents = {}
    for sample in samples:
        if not sample.malformed:
            count = len(json.loads(sample.value).get("images", []))
            contents[sample.key.decode()] = (
                f"text + {count} image{'s' * (count > 1)}" if count else "text only"
            )
    return contents


def _rule_ids(verdict: dict[str, Any], random_model: bool = False) -> str:
    """One rule a line; with a random-weight model, those that read its signals are marked."""
    lines = []
    for rule in verdict["matched_rules"]:
        lines.append(rule["id"] + (RANDOM_MARK if random_model and _reads_model(rule) else ""))
    return "\n".join(lines) or "-"


def _reads_model(rule: dict[str, Any]) -> bool:
    return any(key.split(".")[0] in MODEL_VARIABLES for key in rule.get("evidence", {}))


def specialist_table(report: DemoReport) -> Table:
    """Each post's real specialist signals, merged over its verdicts, with their time."""
    table = Table(title="Real signals (CPU specialists, real weights)")
    table.add_column("post", no_wrap=True, overflow="fold")
    table.add_column("signals", overflow="fold")
    table.add_column("ms", justify="right", no_wrap=True)
    for post_id in sorted(report.verdicts):
        signals, runs = _specialist_signals(report.verdicts[post_id])
        if signals:
            ms = sum(run["ms"] for run in runs.values())
            table.add_row(Text(post_id), Text(" · ".join(signals)), f"{ms:.0f}")
    return table


def _specialist_signals(verdicts: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    values: dict[str, Any] = {}
    runs: dict[str, Any] = {}
    for verdict in verdicts:
        signals = verdict.get("signals", {})
        for name in SPECIALISTS:
            if name in signals:
                values[name] = _merge(values.get(name), signals[name])
        runs |= {r["name"]: r for r in verdict.get("producers", []) if r["name"] in SPECIALISTS}
    return [_shown(name, value, runs.get(name)) for name, value in values.items()], runs


def _merge(before: Any, value: Any) -> Any:
    return before | value if isinstance(before, dict) and isinstance(value, dict) else value


def _shown(name: str, value: Any, run: dict[str, Any] | None) -> str:
    if name == "banks":
        evidence = (run or {}).get("evidence", {})
        hits = [
            f"{bank} match (distance {found['distance']})"
            for bank, found in evidence.items()
            if bank != IMAGE_HASHES  # the post's hashes, kept for retroactive matching
        ]
        return "banks: " + (", ".join(hits) or "no match")
    if name == "ocr":
        flat = " ".join(str(value).split())
        cut = "…" if len(flat) > OCR_SHOWN else ""
        return f'ocr "{flat[:OCR_SHOWN]}{cut}"' if flat else "ocr: no text"
    return f"{name} {value:.2f}" if isinstance(value, int | float) else f"{name} {value}"
