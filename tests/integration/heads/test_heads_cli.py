"""`vlmod heads` on a real Redis: train, list, show, promote and roll back, and the errors a
user meets on the way."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app

pytest.importorskip("sklearn")


def vlmod(*args: str) -> object:
    result = CliRunner().invoke(app, ["heads", *map(str, args)])
    assert "Traceback" not in result.output, result.output
    return result


def write_examples(path, n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    with path.open("w") as file:
        for index in range(n):
            label = index % 2
            vector = rng.normal(size=6) + 1.5 * label
            file.write(json.dumps({"embedding": vector.tolist(), "label": label}) + "\n")
    return str(path)


def test_train_promote_and_roll_back(redis_url, tmp_path):
    name = f"wave-{uuid.uuid4().hex[:6]}"
    redis = ("--redis-url", redis_url)
    common = ("--model", "tiny-smolvlm", *redis)
    first = vlmod(
        "train", name, "--examples", write_examples(tmp_path / "a.jsonl", 80, 1), *common, "--json"
    )
    assert first.exit_code == 0, first.output
    figures = json.loads(first.stdout)
    assert figures["version"] == 1 and figures["auroc"] > 0.85
    assert set(figures) >= {"auroc", "precision", "threshold", "ece"}
    second = vlmod(
        "train", name, "--examples", write_examples(tmp_path / "b.jsonl", 120, 2), *common
    )
    assert second.exit_code == 0, second.output
    assert f"head {name} v2: 120 examples (60 positive)" in second.stdout

    listed = vlmod("list", *redis)
    assert any(line.split() == [name, "1", "1,", "2"] for line in listed.stdout.splitlines())
    shown = vlmod("show", name, *redis)
    assert f"head {name} v1 (active)" in shown.stdout  # a later version waits for promote

    assert "v2 is now active" in vlmod("promote", name, "2", *redis).stdout
    assert json.loads(vlmod("show", name, "--json", *redis).stdout)["version"] == 2
    assert "v2 was already active" in vlmod("promote", name, "2", *redis).stdout
    assert "v1 is active again" in vlmod("rollback", name, *redis).stdout
    assert json.loads(vlmod("show", name, "--json", *redis).stdout)["version"] == 1
    refused = vlmod("rollback", name, *redis)
    assert refused.exit_code == 1 and "no earlier active version" in refused.output
    missing = vlmod("promote", name, "9", *redis)
    assert missing.exit_code == 1 and f"head '{name}' has no version 9" in missing.output


def test_bad_examples_name_the_line(redis_url, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"embedding": [0.1, 0.2], "label": 1}\n{"embedding": [0.1], "label": 0}\n')
    result = vlmod("train", "bad", "--examples", path, "--model", "m", "--redis-url", redis_url)
    assert result.exit_code == 2
    assert f"{path}:2: an embedding of 1 where the first had 2" in result.output
    path.write_text('{"embedding": [0.1, 0.2], "label": "yes"}\n')
    result = vlmod("train", "bad", "--examples", path, "--model", "m", "--redis-url", redis_url)
    assert result.exit_code == 2 and f"{path}:1: `label` must be 0 or 1" in result.output


def test_an_unknown_head_is_an_error_not_a_traceback(redis_url):
    result = vlmod("show", f"none-{uuid.uuid4().hex[:6]}", "--redis-url", redis_url)
    assert result.exit_code == 1 and "no head named" in result.output
