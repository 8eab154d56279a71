"""The lean history reader against the reference: `review.report_io.read_verdicts` (pydantic
`Verdict`s, `verdict_of`) grouped by `group_posts`. Same posts, same fields, same bad lines."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

from contracts.records import ShadowVerdict
from replay.history import RecordedPost, group_posts, read_history
from review.report_io import RecordLimits, read_verdicts
from tests.unit.replay.builders import START, compile_text, decided, record_of
from tests.unit.replay.test_replay_inputs import RECORDED

SHADOW = RECORDED.replace("mode: active", "mode: shadow").replace("version: 1", "version: 2")


def history_lines(tmp_path: Path, posts: int = 60, seed: int = 3) -> list[str]:
    """A varied history: records on first verdicts, shadow verdicts (some on the shadow topic's
    form), repeated verdicts of a slot, naive times, values unavailable or structured."""
    rng = random.Random(seed)
    active = compile_text(tmp_path / "a", "community.yaml", RECORDED)
    shadow = compile_text(tmp_path / "s", "community.yaml", SHADOW)
    lines = []
    for n in range(posts):
        values: dict[str, Any] = {"nsfw": rng.random()}
        unavailable = {}
        if rng.random() < 0.2:
            unavailable["labels.weapon"] = "redis down"
        else:
            values["labels.weapon"] = rng.choice([rng.random(), {"score": [1, {"x": None}]}])
        post = {"id": f"p{n}", "text": rng.choice(["hi", "", None]), "meta": {"a": [1, [2]]}}
        record = record_of(active, post, values, unavailable, truncated=rng.random() < 0.3)
        at = START + timedelta(minutes=n)
        first = decided(active, record, at=at)
        if rng.random() < 0.3:  # naive: read as UTC
            first = first.model_copy(update={"processed_at": at.replace(tzinfo=None)})
        lines.append(first.model_dump_json())
        later = decided(active, record, at=at + timedelta(seconds=rng.choice([-5, 5])))
        lines.append(later.model_copy(update={"record": None}).model_dump_json())
        spare = decided(shadow, record, at=at, with_record=False)
        spare = spare.model_copy(update={"shadow": rng.random() < 0.5})
        if rng.random() < 0.5:
            lines.append(ShadowVerdict(verdict=spare).model_dump_json())
        else:
            lines.append(spare.model_copy(update={"shadow": True}).model_dump_json())
    rng.shuffle(lines)
    return lines


def reference(path: Path, limits: RecordLimits | None = None) -> list[RecordedPost]:
    """The posts as the pydantic path reads them."""
    return group_posts(read_verdicts(str(path), None, limits).records)


def fields(post: RecordedPost) -> dict[str, Any]:
    """Everything replay reads of a post, as plain values."""
    record = post.record
    assert record is not None
    return {
        "post_id": post.post_id,
        "at": post.at,
        "record": (
            record.post,
            record.truncated,
            [(v.producer, v.request, v.value, v.unavailable) for v in record.values],
            dict(getattr(record, "versions", {})),
        ),
        "verdicts": {
            slot: (
                v.post_id, v.key, v.action, v.policy.id, v.policy.version, v.policy.sha256,
                [rule.id for rule in v.matched_rules], v.shadow, v.processed_at,
            )
            for slot, v in sorted(post.verdicts.items())
        },
    }  # fmt: skip


def test_it_reads_what_the_pydantic_path_reads(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text("".join(line + "\n" for line in history_lines(tmp_path)))
    lean = read_history(str(path), None).posts()
    expected = reference(path)
    assert len(expected) == 60
    assert [fields(p) for p in lean] == [fields(p) for p in expected]
    assert type(lean[0].record).__name__ == "LeanRecord"  # it did take the lean path


def test_a_whole_verdict_is_validated_from_its_line_when_kept(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text("".join(line + "\n" for line in history_lines(tmp_path, posts=10)))
    for lean, expected in zip(
        read_history(str(path), None, keep_lines=True).posts(), reference(path), strict=True
    ):
        for slot, verdict in lean.verdicts.items():
            assert lean.full(verdict) == expected.verdicts[slot]


def bad_lines(good: dict[str, Any]) -> list[str]:
    """Lines that are no verdict, each for another reason."""
    deep: Any = "x"
    for _ in range(70):
        deep = {"d": deep}
    record = good["record"]
    return [
        "{not json",
        "[1, 2]",
        json.dumps({**good, "action": "maybe"}),
        json.dumps({**good, "post_id": 5}),
        json.dumps({k: v for k, v in good.items() if k != "key"}),
        json.dumps({**good, "policy": {"id": "community"}}),
        json.dumps({**good, "record": {**record, "values": [{"producer": "x"}]}}),
        json.dumps({**good, "record": {**record, "post": {**record["post"], "meta": deep}}}),
        json.dumps({**good, "processed_at": "yesterday"}),
        json.dumps({**good, "record": {**record, "post": {"id": "p", "pad": "x" * 5000}}}),
        json.dumps({"verdict": {**good, "matched_rules": [{"id": 3}]}}),
        '"a string"',
        "",  # blank: not a record at all
    ]


def test_bad_lines_are_skipped_with_the_reference_reason(tmp_path):
    lines = history_lines(tmp_path, posts=3)
    good = json.loads(next(line for line in lines if '"record":{' in line))
    bad = bad_lines(good)
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join([lines[0], *bad, *lines[1:]]) + "\n")
    limits = RecordLimits(max_bytes=4000, max_depth=64)
    read = read_history(str(path), None, limits).read
    expected = read_verdicts(str(path), None, limits)
    assert read.problem_lines() == expected.problem_lines()
    assert read.skipped == len(bad) - 1 == 12
    assert read.problems[0] == f"{path}:2: not JSON: Expecting property name enclosed in " + (
        "double quotes: line 1 column 2 (char 1)"
    )
    by_line = {p.split(": ", 1)[0]: p.split(": ", 1)[1] for p in read.problems}
    assert by_line[f"{path}:9"] == "nested more than 64 levels"
    assert (
        by_line[f"{path}:11"].startswith("record of ")
        and "over the 4,000-byte" in (by_line[f"{path}:11"])
    )
    assert [fields(p) for p in group_posts(read.records)] == [
        fields(p) for p in group_posts(expected.records)
    ]


def test_a_value_pydantic_coerces_is_read_as_pydantic_reads_it(tmp_path):
    line = json.loads(next(line for line in history_lines(tmp_path, posts=1)))
    line["shadow"] = "true"  # lax: msgspec refuses it, so the line goes the reference path
    path = tmp_path / "history.jsonl"
    path.write_text(json.dumps(line) + "\n")
    (lean,) = read_history(str(path), None).posts()
    (expected,) = reference(path)
    assert fields(lean) == fields(expected) and next(iter(lean.verdicts))[1] is True
