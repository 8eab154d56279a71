"""Golden tasks over real Redis and Tansu: stored by `vlmod review golden add`, served once per
reviewer while real tasks wait, and scored over HTTP without a decision on the decisions topic."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from contracts.records import Action
from contracts.review import GoldenTask
from review.golden import GoldenSet
from review.task_meta import TaskStage
from review.tasks import TaskStore
from tests.integration.consoles import (
    Client,
    RunningConsole,
    read_records,
    review_task,
)
from tests.unit.review.qa_records import T0, task

HEX_KEY = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def store(redis_url):
    return TaskStore(redis_url, namespace=f"golden-{uuid.uuid4().hex[:8]}")


def golden(key: str, answer: Action = Action.ALLOW) -> GoldenTask:
    return GoldenTask(task=task(key), answer=answer)


def test_each_reviewer_gets_each_golden_task_once_and_only_while_real_tasks_wait(store):
    golden_set = GoldenSet(store, rates={"spam": 1.0}, draw=lambda: 0.0)
    assert golden_set.add("spam", [golden("g1"), golden("g2")]) == 2
    assert golden_set.add("spam", [golden("g1")]) == 0, "a known key keeps its task"
    assert golden_set.ids("spam") == ["g1", "g2"]
    assert golden_set.claim("spam", "ana") is None, "no real task waits"

    real = task("real").model_copy(update={"enqueued_at": T0 + timedelta(seconds=5)})
    store.add(real)
    served = []
    for _ in range(3):
        claim = golden_set.claim("spam", "ana")
        assert claim is not None
        assert golden_set.claim("spam", "ana") == claim, "a live claim comes back first"
        served.append(claim)
        store.decide(claim.task.key, "ana", "")
    assert [c.meta.golden_id if c.meta else None for c in served] == ["g1", "g2", None]
    assert served[2].task.key == "real"
    for claim in served[:2]:
        assert claim.meta is not None and claim.meta.stage is TaskStage.GOLDEN
        assert HEX_KEY.match(claim.task.key) and claim.task.verdict.key == claim.task.key
        assert claim.task.enqueued_at == real.enqueued_at, "queued when the oldest real one was"
        assert claim.task.post == task(claim.meta.golden_id or "").post
    assert golden_set.claim("spam", "ana") is None

    store.add(task("real-2"))
    ben = GoldenSet(store, rates={"spam": 1.0}, draw=lambda: 0.0).claim("spam", "ben")
    assert ben is not None and ben.meta is not None and ben.meta.golden_id == "g1"
    never = GoldenSet(store, rates={"spam": 0.0}, draw=lambda: 0.0).claim("spam", "cam")
    assert never is not None and never.task.key == "real-2"


def write_config(console: RunningConsole, path) -> None:
    data = console.config.model_dump(mode="json", exclude_none=True)
    data["session_secret"] = console.config.secret_value()
    path.write_text(yaml.safe_dump(data))


def test_golden_add_stores_a_file_and_refuses_bad_lines_and_unknown_queues(start_console, tmp_path):
    console = start_console()
    config = tmp_path / "review.yaml"
    write_config(console, config)
    source = tmp_path / "golden.jsonl"
    source.write_text(golden("g1").model_dump_json() + "\n" + golden("g2").model_dump_json())
    runner = CliRunner()
    added = runner.invoke(
        app, ["review", "golden", "add", "spam", "--from", str(source), "-c", str(config)]
    )
    assert added.exit_code == 0, added.output
    assert "2 golden task(s) added to spam (0 known already); 2 in all" in added.output
    listed = runner.invoke(app, ["review", "golden", "list", "spam", "-c", str(config)])
    assert listed.output.split() == ["g1", "g2"]
    source.write_text("{}\n")
    bad = runner.invoke(
        app, ["review", "golden", "add", "spam", "--from", str(source), "-c", str(config)]
    )
    assert bad.exit_code == 1 and f"{source}:1: not a GoldenTask" in bad.output
    unknown = runner.invoke(
        app, ["review", "golden", "add", "appeals", "--from", str(source), "-c", str(config)]
    )
    assert unknown.exit_code == 2 and "'appeals' is no review queue" in unknown.output


def test_a_golden_answer_is_scored_and_no_decision_is_published(start_console, password_hash):
    reviewers = {
        "ana": {"password_argon2": password_hash, "queues": ["spam"]},
        "lea": {"password_argon2": password_hash, "queues": ["spam"], "role": "lead"},
    }
    console = start_console(reviewers=reviewers, golden={"spam": {"rate": 1.0}})
    GoldenSet(console.store).add("spam", [golden("g1", Action.ALLOW)])
    real = review_task()
    console.publish(real)
    ana, lea = Client(console), Client(console)
    ana.log_in("ana")
    lea.log_in("lea")

    key = ana.claim("spam")
    assert key != real.key and HEX_KEY.match(key)
    form = {"key": key, "kind": "overturn", "action": "allow", "csrf": ana.csrf("/")}
    answered = ana.post("/decide", form)
    assert answered.status_code == 303
    assert answered.headers["location"] == "/queue/spam?done=overturn", "as after any decision"
    assert ana.get("/queue/spam").text.count(f'data-task-key="{real.key}"') == 1

    assert console.config.golden_topic is not None
    (result,) = read_records(console, console.config.golden_topic, 1, settle_s=1)
    assert result["reviewer"] == "ana" and result["golden_id"] == "g1" and result["correct"]
    decisions = read_records(console, console.config.decisions_topic, 0, timeout_s=3, settle_s=2)
    assert decisions == [], "a golden answer is never a decision"
    assert console.store.final(key) is None

    board = lea.get("/dashboard").text
    rows = re.sub(r"\s+", " ", board.split('id="golden-stats"', 1)[1].split("</table>", 1)[0])
    assert "<td>ana</td><td>1</td><td>1</td> <td>100 %</td>" in rows
    assert lea.get("/api/stats").json()["golden"] == {
        "ana": {"answered": 1, "correct": 1, "accuracy": 1.0}
    }
    assert 'id="golden-stats"' not in ana.get("/dashboard").text, "reviewers never see it"
    assert ana.get("/api/stats").json()["golden"] == {}
    assert re.search(r"ana</td><td>1<", ana.get("/dashboard").text), "counted as a decision"
