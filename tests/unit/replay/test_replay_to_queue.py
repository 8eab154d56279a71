"""Replay-QA tasks without services: what a task carries, and that its decision labels the post
in the next replay (the decision is made by the console's own planner, from the task)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from contracts.records import Action
from contracts.review import DecisionKind, ReviewDecision, ReviewStage, ReviewTask
from replay.metrics import Label, labels_from
from replay.run import replay_posts
from replay.sample import StratifiedSample
from replay.to_queue import post_of, queued_summary, replay_task
from review.decision_build import DecisionChoice, build_appeal_decision
from review.decision_plans import Deciding, DecisionPlanner
from review.tasks import Claim
from tests.unit.replay.builders import replay_json, review, vlmod_replay, write_jsonl
from tests.unit.replay.qa_world import CANDIDATE, candidates, history, posts, reference_key

P = "weapons"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def drawn_tasks(tmp_path, text=CANDIDATE, n=100):
    _, policies = candidates(tmp_path, text)
    sample = StratifiedSample(n)
    replay_posts(posts(tmp_path), policies, sample=sample)
    return {d.post.post_id: replay_task(d, "weapons-qa", NOW) for d in sample.drawn()}


def test_a_task_carries_the_candidates_verdict_under_a_key_of_its_own(tmp_path):
    tasks = drawn_tasks(tmp_path)
    recorded = {v.post_id: v for v in history(tmp_path)}
    queued = tasks["w-sale-0"]
    task = ReviewTask.model_validate_json(queued.task.model_dump_json())  # as the console reads it
    verdict, before = task.verdict, recorded["w-sale-0"]
    # The candidate keeps the recorded version, so a verdict key would be the recorded one.
    assert before.policy.version == verdict.policy.version == 3
    assert task.key == verdict.key == reference_key("w-sale-0", P, verdict.policy.sha256)
    assert task.key != before.key
    assert verdict.policy.sha256 != before.policy.sha256
    assert verdict.action is Action.BLOCK and before.action is Action.ALLOW
    assert [(r.id, r.reason) for r in verdict.matched_rules] == [
        ("sale", "offers a weapon for sale")
    ]
    assert verdict.signals.labels == {"weapon": 0.1}
    assert task.queue == "weapons-qa" and queued.topic == "review.weapons-qa"
    assert task.post.id == "w-sale-0" and task.post.text == "knife for sale"
    assert task.origin is not None and task.origin.kind == "replay"
    assert task.origin.policy_sha256 == verdict.policy.sha256
    assert task.origin.recorded is Action.ALLOW and task.origin.note is None
    assert task.enqueued_at == NOW and task.priority == verdict.priority


def test_the_topic_is_the_candidates_own_for_the_queue(tmp_path):
    text = CANDIDATE.replace("default: allow", "queues: {weapons-qa: qa.weapons}\ndefault: allow")
    tasks = drawn_tasks(tmp_path, text)
    assert {q.topic for q in tasks.values()} == {"qa.weapons"}
    summary = queued_summary(list(tasks.values()))
    assert summary == {
        "tasks": 17,
        "topics": {"qa.weapons": 17},
        "strata": {P: {"allow->block": 2, "allow->review": 12, "review->block": 3}},
    }


def test_a_post_keeps_its_url_images_and_the_note_counts_the_inline_ones():
    fields = {
        "id": "p1",
        "text": "hi",
        "author": "u1",
        "created_at": "2026-11-01T00:00:00Z",
        "meta": {"app": "x"},
        "region": "eu",
        "images": [
            {"url": "https://img.example/a.png", "mime": "image/png"},
            {"url": None, "mime": "image/jpeg"},
            {"url": None, "mime": None},
        ],
    }
    post, dropped = post_of(fields)
    assert dropped == 2
    assert [(str(i.url), i.mime, i.data) for i in post.images] == [
        ("https://img.example/a.png", "image/png", None)
    ]
    assert (
        post.author == "u1" and post.meta == {"app": "x"} and post.model_extra == {"region": "eu"}
    )


def test_a_task_of_a_post_with_inline_images_says_so(tmp_path):
    _, policies = candidates(tmp_path)
    sample = StratifiedSample(100)
    recorded = posts(tmp_path)
    record = recorded[0].record
    assert record is not None
    images = [{"url": None, "mime": "image/png"}]
    recorded[0].record = record.model_copy(update={"post": {**record.post, "images": images}})
    replay_posts(recorded, policies, sample=sample)
    (drawn,) = [d for d in sample.drawn() if d.post.post_id == recorded[0].post_id]
    task = replay_task(drawn, "weapons-qa", NOW).task
    assert task.post.images == []
    assert task.origin is not None
    assert task.origin.note == (
        "The post had an inline image, not shown: a replay's history keeps images by URL only."
    )


def console_decision(task: ReviewTask, choice: DecisionChoice, share: float = 0.0):
    planner = DecisionPlanner(
        decisions_topic="decisions",
        review_topics={"weapons-qa": "review.weapons-qa"},
        second_review={"weapons-qa": share},
    )
    deciding = Deciding(Claim(task, "ana", 0.0), "ana", choice, [], NOW, f"d-{task.key}")
    plan = planner.plan(deciding)
    return [ReviewDecision.model_validate_json(m.value) for m in plan.messages], plan


def test_a_decision_on_a_replay_task_labels_the_post_in_the_next_replay(tmp_path):
    tasks = drawn_tasks(tmp_path)
    upheld, _ = console_decision(tasks["w-sale-0"].task, DecisionChoice("uphold"))
    to_allow = DecisionChoice("overturn", action=Action.ALLOW)
    overturned, _ = console_decision(tasks["w-low-0"].task, to_allow)
    decisions = [*upheld, *overturned]
    assert all(d.origin is not None and d.key == tasks[d.post_id].task.key for d in decisions)
    directory, _ = candidates(tmp_path)
    history_file = write_jsonl(tmp_path / "history.jsonl", history(tmp_path))
    decided = write_jsonl(tmp_path / "decisions.jsonl", decisions)

    before = replay_json("--policy", directory, "--history", history_file)["policies"][P]
    after = replay_json("--policy", directory, "--history", history_file, "--decisions", decided)
    weapons = after["policies"][P]
    # Newly blocked: 2 allow->block and 3 review->block; the reviewed w-sale-0 is seen now.
    assert before["unlabelled_exposure"] == 5 and weapons["unlabelled_exposure"] == 4
    sale, display = weapons["rules"]["sale"], weapons["rules"]["weapon-display"]
    assert (sale["labelled_after"], sale["precision_after"]) == (1, 1.0)
    assert (display["labelled_after"], display["precision_after"]) == (1, 0.0)
    assert before["rules"]["sale"]["labelled_after"] == 0


def test_the_recorded_verdicts_own_label_comes_before_replay_qa(tmp_path):
    tasks = drawn_tasks(tmp_path)
    recorded = {v.post_id: v for v in history(tmp_path)}
    qa, _ = console_decision(tasks["w-low-0"].task, DecisionChoice("uphold"))  # violating
    live = review(recorded["w-low-0"], Action.ALLOW)  # not violating
    labels = labels_from([*qa, live])
    assert labels.of(recorded["w-low-0"]) == Label(True, False)
    assert labels_from(qa).of(recorded["w-low-0"]) == Label(True, True)
    assert labels_from(qa).of(recorded["w-low-1"]) == Label(False, None)


def test_the_latest_replay_qa_decision_counts_and_a_blind_first_one_only_sees(tmp_path):
    tasks = drawn_tasks(tmp_path)
    recorded = {v.post_id: v for v in history(tmp_path)}
    task = tasks["w-low-0"].task
    (first,), plan = console_decision(task, DecisionChoice("uphold"), share=1.0)
    assert first.stage is ReviewStage.FIRST and first.origin == task.origin
    assert labels_from([first]).of(recorded["w-low-0"]) == Label(True, None)
    assert plan.follow is not None and plan.follow.task.origin == task.origin
    early, _ = console_decision(task, DecisionChoice("uphold"))
    late, _ = console_decision(task, DecisionChoice("overturn", action=Action.ALLOW))
    late = [late[0].model_copy(update={"decided_at": NOW.replace(day=2), "decision_id": "d2"})]
    assert labels_from([*late, *early]).of(recorded["w-low-0"]) == Label(True, False)


def test_an_appeal_of_a_replay_qa_decision_keeps_its_origin(tmp_path):
    task = drawn_tasks(tmp_path)["w-low-0"].task
    (original,), _ = console_decision(task, DecisionChoice("uphold"))
    appealed = build_appeal_decision(
        task,
        original,
        "ben",
        DecisionChoice("overturn", action=Action.ALLOW),
        decided_at=NOW.replace(day=3),
    )
    assert appealed.origin == task.origin and appealed.key == task.key


def test_decisions_and_tasks_written_before_origin_existed_still_read(tmp_path):
    task = drawn_tasks(tmp_path)["w-low-0"].task
    old = task.model_dump(mode="json", exclude={"origin"})
    assert ReviewTask.model_validate(old).origin is None
    (decision,), _ = console_decision(task, DecisionChoice("uphold"))
    old_decision = decision.model_dump(mode="json", exclude={"origin"})
    assert ReviewDecision.model_validate(old_decision).origin is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to-queue", "qa"], "error: --to-queue needs --sample N"),
        (["--to-queue", "qa", "--sample", "3"], "error: --to-queue needs --bootstrap HOST:PORT"),
        (["--sample", "3"], "error: --sample is for --to-queue"),
    ],
)
def test_to_queue_options_are_checked_before_anything_is_read(tmp_path, args, message):
    directory, _ = candidates(tmp_path)
    result = vlmod_replay("--policy", directory, "--history", tmp_path / "none.jsonl", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_vlmod_report_counts_replay_qa_decisions_apart_and_joins_the_rest(tmp_path):
    from review.report import build_report

    tasks = drawn_tasks(tmp_path)
    verdicts = history(tmp_path)
    recorded = {v.post_id: v for v in verdicts}
    qa, _ = console_decision(tasks["w-high-0"].task, DecisionChoice("uphold"))
    live = review(recorded["w-high-1"], Action.REVIEW)
    quality = build_report([*qa, live], verdicts)
    assert quality.replay_qa_decisions == 1 and quality.unmatched_keys == ()
    assert quality.decisions == 2 and quality.policies[P].totals.decided == 1
    assert quality.as_dict()["replay_qa_decisions"] == 1


def task_page(task: ReviewTask) -> str:
    """task.html as the console renders it (its Jinja2 settings), for `task` claimed by ana."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    from review.console_state import HERE, pretty
    from review.task_images import image_view

    pages = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined
    )
    pages.filters["pretty"] = pretty
    images = [image_view(image, task.key, i) for i, image in enumerate(task.post.images)]
    return pages.get_template("task.html").render(
        reviewer="ana",
        csrf="c",
        done="",
        delayed=0,
        task=task,
        images=images,
        queue=task.queue,
        lease_left_s=60,
        judged_action=task.verdict.action,
        overturn_to=[],
        escalate_to=[],
        appeal=None,
        similar=None,
        adjudication=None,
        signal_extra={},
        post_extra={},
    )


def test_the_task_page_marks_replay_qa_and_says_what_the_task_lacks(tmp_path):
    task = drawn_tasks(tmp_path)["w-sale-0"].task
    note = "The post had 2 inline images, not shown: <b>"
    with_note = task.model_copy(update={"origin": task.origin.model_copy(update={"note": note})})
    page = task_page(with_note)
    assert 'id="replay-qa"' in page and "No images." in page
    assert "The post had 2 inline images, not shown: &lt;b&gt;" in page
    assert "allow" not in page.split('id="replay-qa"')[1].split("</section>")[0]
    plain = task.model_copy(update={"origin": None})
    assert 'id="replay-qa"' not in task_page(plain)


def test_a_recorded_post_that_is_no_valid_post_is_named_and_not_queued(tmp_path):
    directory, _ = candidates(tmp_path)
    images = [{"url": f"https://img.example/{n}.png", "mime": "image/png"} for n in range(9)]
    verdicts = []
    for verdict in history(tmp_path):
        if verdict.post_id.startswith("w-sale"):  # both changed posts: the sample draws one
            assert verdict.record is not None
            post = {**verdict.record.post, "images": images}  # over the limit of 8
            record = verdict.record.model_copy(update={"post": post})
            verdicts.append(verdict.model_copy(update={"record": record}))
    history_file = write_jsonl(tmp_path / "history.jsonl", verdicts)
    result = vlmod_replay(
        "--policy", directory, "--history", history_file, "--json",
        "--to-queue", "qa", "--sample", "1", "--bootstrap", "127.0.0.1:1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.count(": not queued: images: Value error, 9 images is more than") == 1
    assert json.loads(result.stdout)["to_queue"] == {"tasks": 0, "topics": {}, "strata": {}}


def test_across_candidates_a_later_escalation_does_not_undo_a_label(tmp_path):
    recorded = {v.post_id: v for v in history(tmp_path)}
    first = drawn_tasks(tmp_path / "a")["w-low-0"].task
    other = CANDIDATE.replace("labels.weapon > 0.5", "labels.weapon > 0.52")
    second = drawn_tasks(tmp_path / "b", other)["w-low-0"].task
    assert first.key != second.key, "another candidate file, another task"
    (upheld,), _ = console_decision(first, DecisionChoice("uphold"))
    later = NOW.replace(day=5)
    escalation = ReviewDecision.model_validate(
        {
            **upheld.model_dump(),
            "key": second.key,
            "decision": DecisionKind.ESCALATE,
            "escalated_to": "senior",
            "decided_at": later,
            "decision_id": "e",
        }
    )
    assert labels_from([escalation]).of(recorded["w-low-0"]) == Label(True, None)
    assert labels_from([escalation, upheld]).of(recorded["w-low-0"]) == Label(True, True)
