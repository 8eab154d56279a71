"""`vlmod report` reading real topics on Tansu: the same report as from JSONL files."""

from __future__ import annotations

import json
import random
from datetime import timedelta

from contracts.records import Action
from contracts.review import DecisionKind
from kafka_io.clients import KafkaWriter, OutMessage
from tests.report_helpers import (
    SHADOW,
    T0,
    decide,
    make_verdict,
    shadow_record,
    vlmod_report,
    write_jsonl,
)


def sample_records() -> tuple[list[dict], list[dict]]:
    """Decisions, and verdicts mixing plain active ones with shadow-topic records."""
    rng = random.Random(9)
    decisions, verdicts = [], []
    for n in range(120):
        p = rng.random()
        shared = {"labels": {"scam": p}, "answers": {"wallet": 1 - p}, "reason": None}
        rules = ("scam-link", *(["crypto"] if n % 3 else []))
        active = make_verdict(f"p{n}", rules=rules, **shared)
        shadow_rules = ("scam-v2",) if p > 0.5 else ()
        shadow = make_verdict(
            f"p{n}", rules=shadow_rules, policy=SHADOW, action=Action.BLOCK, **shared
        )
        verdicts += [active.model_dump(mode="json"), shadow_record(shadow)]
        kind = DecisionKind.UPHOLD if rng.random() < p else DecisionKind.OVERTURN
        action = Action.BLOCK if kind is DecisionKind.UPHOLD else Action.ALLOW
        decision = decide(active, kind, action=action, at=T0 + timedelta(seconds=n))
        decisions.append(decision.model_dump(mode="json"))
    orphan = {**decisions[0], "key": "no-such-verdict"}
    return [*decisions, orphan], verdicts


def publish(settings, topic: str, records: list[dict], key: str) -> None:
    writer = KafkaWriter(settings)
    try:
        writer.send_all(
            [OutMessage(topic, json.dumps(r).encode(), str(r.get(key)).encode()) for r in records]
        )
    finally:
        writer.close()


def test_topics_give_the_same_json_as_jsonl_files(kafka_settings, topic_factory, tmp_path):
    decisions, verdicts = sample_records()
    decisions_topic = topic_factory("decisions", partitions=2)
    verdicts_topic = topic_factory("verdicts", partitions=3)
    publish(kafka_settings, decisions_topic, decisions, "key")
    publish(kafka_settings, verdicts_topic, verdicts, "post_id")
    decisions_file = write_jsonl(tmp_path / "d.jsonl", decisions)
    verdicts_file = write_jsonl(tmp_path / "v.jsonl", verdicts)

    from_files = vlmod_report("--decisions", decisions_file, "--verdicts", verdicts_file, "--json")
    from_topics = vlmod_report(
        *("--decisions", f"topic:{decisions_topic}", "--verdicts", f"topic:{verdicts_topic}"),
        *("--bootstrap", kafka_settings.bootstrap_servers, "--json"),
    )
    assert from_files.exit_code == 0, from_files.output
    assert from_topics.exit_code == 0, from_topics.output
    body = json.loads(from_topics.stdout)
    assert body == json.loads(from_files.stdout)
    assert (body["decisions"], body["verdicts"], body["unmatched_decisions"]) == (121, 240, 1)
    assert body["policies"]["scams"]["rules"]["crypto"]["decided"] == 80
    assert body["shadow"]["scams"]["scored"] == 120


def test_a_missing_topic_is_named(kafka_settings, topic_factory):
    verdicts_topic = topic_factory("verdicts")
    missing = f"{verdicts_topic}-missing"
    result = vlmod_report(
        *("--decisions", f"topic:{missing}", "--verdicts", f"topic:{verdicts_topic}"),
        *("--bootstrap", kafka_settings.bootstrap_servers),
    )
    assert result.exit_code == 1
    assert result.stderr == (
        f"topic {missing} does not exist on {kafka_settings.bootstrap_servers}\n"
    )


def test_bad_records_on_a_topic_are_named_by_partition_and_offset_and_skipped(
    kafka_settings, topic_factory
):
    decisions, verdicts = sample_records()
    decisions_topic, verdicts_topic = topic_factory("decisions"), topic_factory("verdicts")
    publish(kafka_settings, decisions_topic, decisions[:2], "key")
    publish(kafka_settings, verdicts_topic, verdicts[:4], "post_id")  # p0 and p1, with shadows
    big = json.dumps({**decisions[0], "note": "x" * 3000}).encode()
    deep = b'{"note": ' + b"[" * 900 + b"]" * 900 + b"}"  # under the size limit, 901 levels
    writer = KafkaWriter(kafka_settings)
    try:
        writer.send_all(
            [OutMessage(decisions_topic, value, b"k") for value in (b"{oops", big, deep)]
        )
    finally:
        writer.close()
    bootstrap = kafka_settings.bootstrap_servers
    sources = ["--verdicts", f"topic:{verdicts_topic}", "--bootstrap", bootstrap]
    result = vlmod_report(
        *("--decisions", f"topic:{decisions_topic}", *sources, "--max-record-bytes", "2000")
    )
    assert result.exit_code == 0, result.output
    where = f"topic:{decisions_topic}[0]"
    problems = result.stderr.splitlines()
    assert problems[0].startswith(f"{where}@2: not JSON")
    assert problems[1:] == [
        f"{where}@3: record of {len(big):,} bytes is over the 2,000-byte limit",
        f"{where}@4: nested more than 64 levels",
        f"topic {decisions_topic}: skipped 3 bad records of 5",
    ]
    assert "2 decisions" in result.stdout

    empty = topic_factory("empty")
    result = vlmod_report("--decisions", f"topic:{empty}", *sources)
    assert (result.exit_code, result.stderr) == (1, f"topic {empty}: no decisions in it\n")


def test_an_unreachable_broker_is_one_line():
    result = vlmod_report(
        *("--decisions", "topic:d", "--verdicts", "topic:v", "--bootstrap", "127.0.0.1:9")
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: Kafka at 127.0.0.1:9 failed")
    assert len(result.stderr.splitlines()) == 1
