"""What the heads tests share: a spam wave and ordinary posts a head learns to tell apart, the
policy that reads the head, examples to train it on, and the CLI to train it with."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app

POLICY = """
id: waves
version: 1
signals:
  heads: [{head}]
rules:
  - id: spam-wave
    when: 'heads["{head}"] > 0.5'
    action: review
    queue: spam
default: allow
"""
SPAM = "cheap pills, buy now and save, limited offer number {n}"
HAM = "we watched the sunset at the beach with the kids, day {n}"


def invoke(*args: object) -> object:
    """`vlmod ARGS`, in-process; a traceback in its output fails the test."""
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert "Traceback" not in result.output, result.output
    return result


def write_examples(path: Path, spam_label: int) -> str:
    """16 spam and 16 ordinary posts as `heads train --examples` JSONL; the spam's label is
    `spam_label` (0 trains a head that flags the ordinary posts instead)."""
    lines = []
    for n in range(16):
        lines.append({"post": {"id": f"s{n}", "text": SPAM.format(n=n)}, "label": spam_label})
        lines.append({"post": {"id": f"h{n}", "text": HAM.format(n=n)}, "label": 1 - spam_label})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)
