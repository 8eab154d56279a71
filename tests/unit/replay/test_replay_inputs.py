"""What a replay cannot decide, and bad input: reasons named, nothing read as 0, no traceback."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from contracts.records import Action
from tests.unit.replay.builders import (
    START,
    compile_text,
    decided,
    record_of,
    replay_json,
    vlmod_replay,
    write_jsonl,
)

RECORDED = """\
id: community
version: 1
mode: active
signals:
  labels:
    weapon: "a weapon such as a gun or a knife"
  nsfw: true
default: allow
rules:
  - id: explicit
    when: nsfw > 0.85
    action: block
  - id: weapon
    when: labels.weapon > 0.8
    action: review
    queue: weapons
"""
# The candidate also asks about gore, which the recorded policy never asked.
CANDIDATE = (
    RECORDED.replace("version: 1", "version: 2").replace(
        "  nsfw: true\n", '    gore: "graphic violence, blood or gore"\n  nsfw: true\n'
    )
    + """\
  - id: gore
    when: labels.gore > 0.5
    action: review
    queue: violence
"""
)


def history(tmp_path: Path, rows: list[dict], **record: object) -> str:
    """A JSONL history of `community` v1 verdicts on posts with these values."""
    policy = compile_text(tmp_path / "recorded", "community.yaml", RECORDED)
    verdicts = []
    for n, values in enumerate(rows):
        rec = record_of(policy, {"id": f"p{n}", "text": "hi"}, values, **record)
        verdicts.append(decided(policy, rec, at=START + timedelta(minutes=n)))
    return write_jsonl(tmp_path / "history.jsonl", verdicts)


def candidates(tmp_path: Path, text: str = CANDIDATE, name: str = "community.yaml") -> Path:
    compile_text(tmp_path / "candidates", name, text)
    return tmp_path / "candidates"


def same_policy(tmp_path: Path) -> tuple[str, ...]:
    """The recorded policy as the candidate, decided again rather than taken as recorded."""
    return ("--policy", str(candidates(tmp_path, RECORDED)), "--decide-unchanged")


def test_a_signal_the_history_lacks_makes_the_post_not_replayable_with_its_name(tmp_path):
    source = history(tmp_path, [{"labels.weapon": 0.1, "nsfw": 0.1}])
    report = replay_json("--policy", candidates(tmp_path), "--history", source)
    assert report["not_replayable"] == {
        "count": 1,
        "reasons": {"labels.gore not recorded": 1},
    }
    community = report["policies"]["community"]
    assert community["replayed"] == 0
    assert community["not_replayable"] == {"count": 1, "reasons": {"labels.gore not recorded": 1}}
    assert community["transitions"] == {}


def test_a_missing_signal_that_cannot_change_the_decision_does_not_stop_the_replay(tmp_path):
    # nsfw > 0.85 blocks: a gore score could only add a review, which does not outrank a block.
    source = history(tmp_path, [{"labels.weapon": 0.1, "nsfw": 0.9}])
    report = replay_json("--policy", candidates(tmp_path), "--history", source)
    assert report["not_replayable"]["count"] == 0
    assert report["policies"]["community"]["transitions"] == {"block->block": 1}


def test_a_renamed_label_with_the_same_prompt_is_found_by_its_request(tmp_path):
    source = history(tmp_path, [{"labels.weapon": 0.9, "nsfw": 0.1}])
    renamed = RECORDED.replace("weapon:", "arms:").replace("labels.weapon", "labels.arms")
    report = replay_json("--policy", candidates(tmp_path, renamed), "--history", source)
    assert report["policies"]["community"]["transitions"] == {"review->review": 1}


def test_a_changed_prompt_is_not_the_recorded_value(tmp_path):
    source = history(tmp_path, [{"labels.weapon": 0.9, "nsfw": 0.1}])
    reworded = RECORDED.replace("a gun or a knife", "a gun, a knife or a sword")
    report = replay_json("--policy", candidates(tmp_path, reworded), "--history", source)
    assert report["not_replayable"]["reasons"] == {"labels.weapon not recorded": 1}


def test_a_value_recorded_as_unavailable_stays_unavailable(tmp_path):
    # nsfw's store was down: live, the explicit rule was a rule error and the post was allowed.
    source = history(
        tmp_path,
        [{"labels.weapon": 0.1}],
        unavailable={"nsfw": "nsfw: its store is down"},
    )
    assert json.loads(Path(source).read_text())["action"] == "allow"
    report = replay_json(*same_policy(tmp_path), "--history", source)
    assert report["not_replayable"]["count"] == 0
    assert report["policies"]["community"]["transitions"] == {"allow->allow": 1}


def test_a_history_without_records_is_not_replayable(tmp_path):
    policy = compile_text(tmp_path / "recorded", "community.yaml", RECORDED)
    rec = record_of(policy, {"id": "p0"}, {"labels.weapon": 0.9, "nsfw": 0.1})
    source = write_jsonl(tmp_path / "h.jsonl", [decided(policy, rec, with_record=False)])
    report = replay_json("--policy", candidates(tmp_path, RECORDED), "--history", source)
    assert report["not_replayable"] == {"count": 1, "reasons": {"no record in the history": 1}}


def test_a_policy_with_no_recorded_verdict_is_counted_apart(tmp_path):
    source = history(tmp_path, [{"labels.weapon": 0.9, "nsfw": 0.1}])
    other = RECORDED.replace("id: community", "id: brand-new")
    report = replay_json("--policy", candidates(tmp_path, other), "--history", source)
    assert report["policies"]["brand-new"]["unrecorded"] == 1
    assert report["policies"]["brand-new"]["replayed"] == 0


def test_a_shadow_candidate_is_compared_with_the_active_verdict_of_its_id(tmp_path):
    source = history(tmp_path, [{"labels.weapon": 0.75, "nsfw": 0.1}])
    shadow = RECORDED.replace("mode: active", "mode: shadow").replace(
        "weapon > 0.8", "weapon > 0.7"
    )
    report = replay_json("--policy", candidates(tmp_path, shadow), "--history", source)
    assert report["policies"]["community@shadow"]["transitions"] == {"allow->review": 1}


def test_bad_history_lines_are_named_counted_and_skipped(tmp_path):
    source = Path(history(tmp_path, [{"labels.weapon": 0.9, "nsfw": 0.1}] * 2))
    lines = source.read_text().splitlines()
    source.write_text("\n".join([lines[0], "{not json", '{"post_id": 3}', lines[1]]) + "\n")
    result = vlmod_replay("--policy", candidates(tmp_path, RECORDED), "--history", source, "--json")
    assert result.exit_code == 0
    assert f"{source}:2: not JSON" in result.stderr
    assert f"{source}:3: " in result.stderr
    assert f"{source}: skipped 2 bad records of 4" in result.stderr
    report = json.loads(result.stdout)
    assert report["skipped_records"] == {"history": 2}
    assert report["policies"]["community"]["replayed"] == 2


def test_bad_decision_lines_are_named_and_counted(tmp_path):
    source = history(tmp_path, [{"labels.weapon": 0.9, "nsfw": 0.1}])
    bad = tmp_path / "decisions.jsonl"
    bad.write_text('{"key": 1}\n')
    result = vlmod_replay(
        "--policy", candidates(tmp_path, RECORDED), "--history", source, "--decisions", bad
    )
    assert result.exit_code == 1  # nothing usable in it at all
    assert f"{bad}:1: " in result.stderr
    assert f"{bad}: no decisions in it" in result.stderr


def test_an_invalid_candidate_is_refused_with_its_position(tmp_path):
    source = history(tmp_path, [{"labels.weapon": 0.9, "nsfw": 0.1}])
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "community.yaml").write_text(RECORDED.replace("weapon > 0.8", "weapon > > 0.8"))
    result = vlmod_replay("--policy", folder, "--history", source)
    assert result.exit_code == 1
    line = RECORDED.splitlines().index("    when: labels.weapon > 0.8") + 1
    assert f"{folder / 'community.yaml'}:{line}:27: condition does not compile" in result.stderr
    assert result.stdout == ""


def test_since_until_and_limit_choose_the_posts(tmp_path):
    rows = [{"labels.weapon": 0.9, "nsfw": 0.1}] * 6  # decided a minute apart from START
    source = history(tmp_path, rows)
    policies = candidates(tmp_path, RECORDED)
    since = (START + timedelta(minutes=1)).isoformat()
    until = (START + timedelta(minutes=5)).isoformat()
    window = replay_json(
        "--policy", policies, "--history", source, "--since", since, "--until", until
    )
    assert window["posts"] == 4
    limited = replay_json("--policy", policies, "--history", source, "--limit", 2)
    assert limited["posts"] == 2
    result = vlmod_replay("--policy", policies, "--history", source, "--since", "yesterday")
    assert result.exit_code == 2
    assert "--since 'yesterday' is not an ISO 8601 time" in result.stderr


def test_the_json_is_the_same_bytes_every_time_and_the_text_summary_reads(tmp_path):
    rows = [{"labels.weapon": w / 10, "nsfw": 0.1} for w in range(10)]
    source = history(tmp_path, rows)
    policies = candidates(tmp_path, RECORDED.replace("weapon > 0.8", "weapon > 0.6"))
    first = vlmod_replay("--policy", policies, "--history", source, "--json").stdout
    assert first == vlmod_replay("--policy", policies, "--history", source, "--json").stdout
    text = vlmod_replay("--policy", policies, "--history", source)
    assert text.exit_code == 0
    assert text.stdout.startswith("10 posts; not replayable: 0")
    assert "community: replayed 10, changed 2" in text.stdout
    assert "allow->review 2" in text.stdout
    assert "\n    weapon " in text.stdout  # a row of the rules table, on its own line


@pytest.mark.parametrize("truncated", [True, False])
def test_a_cut_text_is_reviewed_again_as_it_was(tmp_path, truncated):
    source = history(tmp_path, [{"labels.weapon": 0.1, "nsfw": 0.1}], truncated=truncated)
    report = replay_json(*same_policy(tmp_path), "--history", source)
    action = (Action.REVIEW if truncated else Action.ALLOW).value
    assert report["policies"]["community"]["transitions"] == {f"{action}->{action}": 1}


def test_an_unchanged_policy_keeps_its_recorded_verdict_unless_asked_to_decide_again(tmp_path):
    # The record lacks nsfw (say it was kept before nsfw was recorded): deciding again cannot.
    source = history(tmp_path, [{"labels.weapon": 0.1}])
    kept = replay_json("--policy", candidates(tmp_path, RECORDED), "--history", source)
    assert kept["policies"]["community"]["transitions"] == {"allow->allow": 1}
    again = replay_json(*same_policy(tmp_path), "--history", source)
    assert again["not_replayable"]["reasons"] == {"nsfw not recorded": 1}


def test_progress_is_shown_on_stderr_when_asked(tmp_path):
    source = history(tmp_path, [{"labels.weapon": 0.9, "nsfw": 0.1}] * 3)
    policies = str(candidates(tmp_path, RECORDED))
    shown = vlmod_replay("--policy", policies, "--history", source, "--json", "--progress")
    assert shown.exit_code == 0
    assert "replayed 3 posts (" in shown.stderr
    json.loads(shown.stdout)  # stdout stays the report alone
    quiet = vlmod_replay("--policy", policies, "--history", source, "--json")
    assert "replayed" not in quiet.stderr  # not a terminal, not asked
