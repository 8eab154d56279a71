"""Retroactive matching's pure parts: which recent posts a new bank hash finds, the re-check's
key and header, the window entry a decided post leaves, and what `bank add` says."""

from __future__ import annotations

import random

import pytest

from contracts.outcomes import ActiveVerdict, Outcome, SourceRef
from contracts.records import RECHECK_HEADER, PolicyRef, Post, ProducerRun, Verdict, verdict_key
from operators.specialists.recent_images import RecentImage
from pipelines.journey import Journey, SourceMessage
from sinks.recent_images import RecentImagesSink, recent_image

pytest.importorskip("faiss")

from cli.bank import recheck_lines
from pipelines.recheck import Rechecked, posts_matching


def _hash(seed: int) -> str:
    return random.Random(seed).randbytes(32).hex()


def _flip(hex_hash: str, bits: int) -> str:
    """`hex_hash` with its first `bits` bits inverted: that many bits away."""
    value = int(hex_hash, 16) ^ (((1 << bits) - 1) << (256 - bits))
    return f"{value:064x}"


def _entry(post_id: str, *hashes: str, offset: int = 0) -> RecentImage:
    return RecentImage(post_id, "posts", 0, offset, hashes)


def test_a_new_hash_finds_the_posts_with_an_image_within_the_threshold_and_only_those():
    banked = _hash(1)
    window = [
        _entry("copy", _hash(9), _flip(banked, 20)),  # second image, 20 bits away
        _entry("far", _flip(banked, 40)),
        _entry("other", _hash(2)),
        _entry("exact", banked),
    ]
    found = posts_matching(window, [banked], threshold=31)
    assert [entry.post_id for entry in found] == ["copy", "exact"]
    assert posts_matching(window, [banked], threshold=10) == [window[3]]
    assert posts_matching(window, [], threshold=31) == []


def test_a_post_seen_twice_is_found_once_where_it_was_read_last_in_first_seen_order():
    banked = _hash(1)
    window = [
        _entry("a", banked, offset=1),
        _entry("b", banked, offset=2),
        _entry("a", banked, offset=9),
    ]
    found = posts_matching(window, [banked], threshold=31)
    assert [(entry.post_id, entry.offset) for entry in found] == [("a", 9), ("b", 2)]


def test_a_window_entry_reads_back_and_a_malformed_one_is_refused():
    entry = _entry("p", _hash(1), _hash(2), offset=7)
    assert RecentImage.from_fields(entry.fields()) == entry
    with pytest.raises(ValueError):
        RecentImage.from_fields({**entry.fields(), "offset": "x"})
    with pytest.raises(KeyError):
        RecentImage.from_fields({"post": "p"})
    for hashes in ("ab" * 31, "zz" * 32, f"{_hash(1)},x"):
        with pytest.raises(ValueError):
            RecentImage.from_fields({**entry.fields(), "hashes": hashes})


def test_a_recheck_gets_a_key_of_its_own_per_change_and_the_first_key_is_unchanged():
    first = verdict_key("p", "policy", 3)
    assert verdict_key("p", "policy", 3, None) == first
    again = verdict_key("p", "policy", 3, "bank known-bad@4")
    assert again != first
    assert verdict_key("p", "policy", 3, "bank known-bad@5") != again


def test_the_recheck_header_names_why_a_post_is_decided_again():
    plain = Journey(SourceMessage(b"{}"), context=None)  # type: ignore[arg-type]
    assert plain.recheck is None
    headers = (("traceparent", b"00-x"), (RECHECK_HEADER, b"bank known-bad@4"))
    again = Journey(SourceMessage(b"{}", headers=headers), context=None)  # type: ignore[arg-type]
    assert again.recheck == "bank known-bad@4"


def _outcome(evidence: dict, post_id: str = "p") -> Outcome:
    run = ProducerRun(name="banks", ms=1.0, evidence=evidence)
    verdict = Verdict(
        post_id=post_id,
        key="k",
        action="allow",
        policy=PolicyRef(id="x", version=1, sha256="0" * 64),
        producers=[ProducerRun(name="nsfw", ms=1.0), run],
    )
    return Outcome(
        source=SourceRef(topic="posts", partition=2, offset=41),
        post_id=post_id,
        post=Post(id=post_id),
        verdicts=(ActiveVerdict(verdict=verdict),),
    )


def test_a_decided_post_leaves_its_image_hashes_and_where_it_was_read():
    hashes = {"0": _hash(1), "2": _hash(2)}
    entry = recent_image(_outcome({"image_hashes": hashes, "known-bad": {"distance": 3}}))
    assert entry == RecentImage("p", "posts", 2, 41, (_hash(1), _hash(2)))
    assert recent_image(_outcome({"known-bad": {"distance": 3}})) is None, "nothing hashed"


def test_the_window_sink_logs_a_redis_failure_and_never_fails_the_batch(caplog):
    class Down:
        def add(self, entries):
            raise ConnectionError("redis is down")

    sink = RecentImagesSink(Down())  # type: ignore[arg-type]
    outcomes = [_outcome({"image_hashes": {"0": _hash(1)}}, post_id=f"p{n}") for n in range(3)]
    assert sink.write(outcomes) == []
    assert sink.left_out == 3
    assert "3 post(s) not kept (redis is down)" in caplog.text


def test_bank_add_names_what_it_found_and_what_it_could_not_decide_again():
    matched = tuple(_entry(f"p{n}", _hash(n)) for n in range(12))
    found = Rechecked(reason="bank b@2", window=50, matched=matched)
    [line] = recheck_lines(found, configured=False)
    assert line.startswith("12 recent post(s) have a newly banked image: p0, p1,")
    assert line.endswith("p9 and 2 more; give --config (the pipeline's YAML) to decide them again")
    done = Rechecked(("p0", "p1"), ("p2",), "bank b@2", 50, 1, matched[:3])
    assert recheck_lines(done, configured=True) == [
        "warning: 1 recent-images entries could not be read",
        "decided again (bank b@2): 2 recent post(s) published again: p0, p1",
        "error: 1 post(s) with a newly banked image are no longer in their topic (past its "
        "retention), not decided again: p2",
    ]
    none = Rechecked(reason="bank b@2", window=50)
    assert recheck_lines(none, configured=True) == [
        "none of the 50 recent post(s) has a newly banked image"
    ]
