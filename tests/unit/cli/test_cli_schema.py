"""`vlmod --help` and `vlmod schema`, through the installed console script."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

VLMOD = shutil.which("vlmod") or "vlmod"
GOLDEN = Path(__file__).resolve().parents[1] / "pipelines" / "golden"


def vlmod(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VLMOD, *args], capture_output=True, text=True, timeout=120, check=False)


def test_help_lists_the_commands():
    result = vlmod("--help")
    assert result.returncode == 0
    for command in ("schema", "policy", "model", "bank"):
        assert command in result.stdout


@pytest.mark.parametrize(
    "name",
    [
        "post",
        "verdict",
        "dead-letter",
        "shadow",
        "review-task",
        "review-decision",
        "appeal",
        "golden-task",
        "golden-result",
    ],
)
def test_schema_prints_valid_json_schema(name):
    result = vlmod("schema", name)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema")


def test_unknown_schema_is_refused_with_the_choices():
    result = vlmod("schema", "nope")
    assert result.returncode == 2
    choices = (
        "post, verdict, dead-letter, shadow, review-task, review-decision, appeal, "
        "golden-task, golden-result, policy"
    )
    assert f"unknown schema 'nope'; choose one of: {choices}" in result.stderr


def test_the_verdict_schema_describes_the_record_and_admits_a_verdict_carrying_one():
    schema = json.loads(vlmod("schema", "verdict").stdout)
    record = schema["$defs"]["PostRecord"]
    assert {"version", "post", "truncated", "values", "versions"} == set(record["properties"])
    assert set(schema["$defs"]["RecordedValue"]["properties"]) == {
        "producer",
        "request",
        "value",
        "unavailable",
    }
    assert "first verdict only" in schema["properties"]["record"]["description"]
    written = (GOLDEN / "kafka_messages.jsonl").read_text().splitlines()
    verdicts = [json.loads(json.loads(line)["value"]) for line in written]
    records = [v["record"] for v in verdicts if v.get("record")]
    assert records, "the golden pipeline output has verdicts carrying a record"
    # Only the record: the golden file masks the verdict's timings.
    Draft202012Validator({"$defs": schema["$defs"], **record}).validate(records[0])
