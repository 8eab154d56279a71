"""A replay shared over several processes gives exactly the report of one process: every count,
each candidate's sample of changed posts, and the bad lines named, in file order.

The history is built so that a post's verdicts are far apart in the file (every post's first
policy verdict, then every post's second), it holds bad lines of each kind, reviewers decided
every third post, and the candidates change more posts than a sample keeps.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from cli.replay import _candidates, _run
from contracts.records import Action
from replay.history import is_dsn
from review.report_io import RecordLimits
from tests.unit.replay.builders import (
    START,
    compile_text,
    decided,
    record_of,
    replay_json,
    review,
    write_jsonl,
)

POLICY = """\
id: {id}
version: {version}
mode: active
signals:
  labels:
    {label}: "{label} shown in the image"
rules:
  - id: {id}-review
    when: labels.{label} > {review}
    action: review
    queue: {id}
  - id: {id}-block
    when: labels.{label} > {block}
    action: block
    queue: {id}
default: allow
"""
POSTS = 900
BAD_LINES = [
    "not json at all",
    '{"post_id": 5, "action": "allow"}',
    '{"post_id": "p-bad", "action": "maybe"}',
    "[1, 2, 3]",
]


def policy(folder, policy_id: str, label: str, version: int, review: float, block: float):
    text = POLICY.format(id=policy_id, label=label, version=version, review=review, block=block)
    return compile_text(folder, f"{policy_id}.yaml", text)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A history of two policies' verdicts, bad lines among them, and reviewers' decisions."""
    folder = tmp_path_factory.mktemp("parallel")
    weapons = policy(folder / "recorded", "weapons", "weapon", 1, 0.8, 0.95)
    gore = policy(folder / "recorded", "gore", "gore", 1, 0.7, 0.9)
    rng = random.Random(5)
    firsts, seconds, decisions = [], [], []
    for n in range(POSTS):
        values = {"labels.weapon": rng.random(), "labels.gore": rng.random()}
        post = {"id": f"p{n}", "text": f"post {n}"}
        at = START + timedelta(seconds=n)
        first = decided(weapons, record_of(weapons, post, values), at=at)
        # The record's gore value rides on the first verdict; the second carries none.
        record = record_of(weapons, post, values).model_copy(
            update={
                "values": [
                    *record_of(weapons, post, values).values,
                    *record_of(gore, post, values).values,
                ]
            }
        )
        first = first.model_copy(update={"record": record})
        second = decided(gore, record_of(gore, post, values), at=at, with_record=False)
        firsts.append(first)
        seconds.append(second)
        if n % 3 == 0:
            decisions.append(review(first, first.action if rng.random() < 0.6 else Action.ALLOW))
    path = folder / "history.jsonl"
    write_jsonl(path, [*firsts, *seconds])
    lines = path.read_text().splitlines()
    for offset, bad in enumerate(BAD_LINES * 8):  # more bad lines than are named
        lines.insert(37 * offset + 11, bad)
    lines.insert(500, "")  # a blank line is no record
    path.write_text("\n".join(lines) + "\n")
    decisions_path = write_jsonl(folder / "decisions.jsonl", decisions)
    candidates = folder / "candidates"
    policy(candidates, "weapons", "weapon", 2, 0.6, 0.9)
    policy(candidates, "gore", "gore", 2, 0.75, 0.97)
    return str(path), decisions_path, candidates


def replayed(world, workers: int, capsys, **options):
    history, decisions, candidates = world
    assert not is_dsn(history)
    report = _run(
        _candidates(candidates, None, None),
        history,
        decisions,
        None,
        RecordLimits(),
        (options.get("since"), None),
        None,
        False,
        options.get("decide_unchanged", False),
        None,
        None,
        workers,
    )
    return report, capsys.readouterr().err


@pytest.mark.parametrize("workers", [2, 3])
def test_several_processes_give_the_report_of_one(world, workers, capsys):
    one, one_err = replayed(world, 1, capsys)
    many, many_err = replayed(world, workers, capsys)
    assert many.as_dict() == one.as_dict()
    assert one.posts == POSTS
    assert one.skipped_records["history"] == len(BAD_LINES) * 8
    for name, change in one.policies.items():
        assert change.changed > len(change.sample) > 0  # the sample is cut: its merge matters
        assert many.policies[name].sample == change.sample
    assert many_err == one_err
    assert "history.jsonl:12: " in one_err  # the first bad line, named by its line
    assert f"skipped {len(BAD_LINES) * 8} bad records" in one_err


def test_a_window_and_deciding_every_policy_again_agree_too(world, capsys):
    since = START + timedelta(seconds=POSTS // 2)
    one, _ = replayed(world, 1, capsys, since=since, decide_unchanged=True)
    many, _ = replayed(world, 2, capsys, since=since, decide_unchanged=True)
    assert one.posts == POSTS - POSTS // 2
    assert many.as_dict() == one.as_dict()


def test_the_command_gives_the_same_json_with_workers(world):
    history, decisions, candidates = world
    args = ("--policy", candidates, "--history", history, "--decisions", decisions)
    assert replay_json(*args, "--workers", "2") == replay_json(*args, "--workers", "1")


def test_a_history_with_no_verdicts_is_refused_as_by_one_process(tmp_path, world):
    _, _, candidates = world
    empty = tmp_path / "bad.jsonl"
    empty.write_text("not json\n")
    from tests.unit.replay.builders import vlmod_replay

    one = vlmod_replay("--policy", candidates, "--history", empty, "--workers", "1")
    many = vlmod_replay("--policy", candidates, "--history", empty, "--workers", "2")
    assert one.exit_code == many.exit_code == 1
    assert many.output == one.output
    assert "no verdicts in it" in many.output


def test_a_post_id_routes_the_same_however_the_line_is_written():
    """Read off the line's start, or decoded where the line is written otherwise (spaces,
    another key first, escapes): one id always goes to one worker."""
    from replay.parallel import worker_of

    def route(text: str) -> int:
        return worker_of(text.encode(), 7)

    for post_id in ("p1", "p2", "héllo", "a/b", "x y"):
        compact = route(f'{{"post_id":"{post_id}","action":"allow"}}')
        assert route(f'{{"action": "allow", "post_id": "{post_id}"}}') == compact
        assert route(f'{{ "post_id" : "{post_id}" }}') == compact
    escaped = route('{"post_id":"say \\"hi\\"","action":"allow"}')
    assert escaped == route('{"action":"allow","post_id":"say \\"hi\\""}')
    assert len({route(f'{{"post_id":"p{n}"}}') for n in range(200)}) == 7
    assert route("not json") == route('{"post_id": 5}') == route("") == 0
