"""Hash banks in a real Redis: shared between consumers, live-reloaded, typed errors on outage."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime

import numpy as np
import pytest

from contracts.errors import Stage
from operators.specialists.hashbank import (
    BankEntry,
    BankMatch,
    BankMatcher,
    BankMissing,
    BankStore,
    BanksUnavailable,
)
from operators.specialists.pdq import PdqHash

pytestmark = pytest.mark.integration

RNG = np.random.default_rng(42)


def entry(source: str, quality: int = 90) -> BankEntry:
    return BankEntry.of(
        PdqHash(RNG.integers(0, 256, 32, dtype=np.uint8).tobytes(), quality), source
    )


def near(value: BankEntry, flips: int) -> bytes:
    """The entry's hash with its first `flips` bits flipped."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(value.hash), dtype=np.uint8))
    bits[:flips] ^= 1
    return np.packbits(bits).tobytes()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(redis_url, namespace) -> BankStore:
    return BankStore(redis_url, namespace=namespace)


def test_add_list_and_remove(store):
    a, b, c = entry("a.png"), entry("b.png"), entry("c.jpg")
    assert store.add("known-scams", [a, b, c]) == 3
    assert store.add("known-scams", [a, BankEntry(b.hash.upper(), 50, "again.png", "x")]) == 0
    info = store.banks()["known-scams"]
    assert (info.count, info.threshold) == (3, 31)
    datetime.fromisoformat(info.updated_at)
    assert {e.source for e in store.entries("known-scams")} == {"a.png", "b.png", "c.jpg"}
    assert store.remove("known-scams", [b.hash.upper(), entry("never-added").hash]) == 1
    assert store.banks()["known-scams"].count == 2
    assert store.remove("known-scams") == 2
    assert store.banks() == {}
    assert store.entries("known-scams") == []


def test_every_change_bumps_the_version_and_no_ops_do_not(store):
    start = store.version()
    store.add("one", [entry("a.png")])
    store.add("two", [], threshold=20)
    store.remove("one")
    assert store.version() == start + 3
    assert store.remove("never-existed") == 0
    assert store.version() == start + 3


def test_threshold_is_per_bank_and_kept_until_changed(store):
    store.add("strict", [entry("a.png")], threshold=8)
    store.add("strict", [entry("b.png")])
    assert store.banks()["strict"].threshold == 8
    store.add("strict", [], threshold=40)
    assert store.banks()["strict"].threshold == 40
    with pytest.raises(ValueError, match="threshold"):
        store.add("strict", [], threshold=64)


@pytest.mark.parametrize("name", ["Known", "bad_name", "-x", "a b", "", "ns:bank:x"])
def test_bad_bank_name_is_refused_naming_it(store, name):
    with pytest.raises(ValueError, match="bank name") as caught:
        store.add(name, [entry("a.png")])
    assert repr(name) in str(caught.value)
    assert store.banks() == {}


def test_low_quality_hashes_are_refused(store):
    with pytest.raises(ValueError, match=r"flat\.png"):
        store.add("known", [entry("ok.png"), entry("flat.png", quality=10)])
    assert store.banks() == {}


def test_banks_survive_a_consumer_restart(redis_url, namespace):
    banked = entry("logo.png")
    BankStore(redis_url, namespace=namespace).add("logos", [banked])
    restarted = BankMatcher(BankStore(redis_url, namespace=namespace))
    assert restarted.match("logos", [bytes(32), near(banked, 4)]) == BankMatch(
        distance=4, hash=banked.hash, image=1, source="logo.png"
    )


def test_a_change_reaches_a_running_matcher_after_refresh_s(redis_url, namespace):
    clock = Clock()
    matcher = BankMatcher(BankStore(redis_url, namespace=namespace), refresh_s=5, clock=clock)
    editor = BankStore(redis_url, namespace=namespace)
    banked = entry("new.png")
    with pytest.raises(BankMissing, match=r"^no bank named fresh$"):
        matcher.match("fresh", [near(banked, 2)])
    editor.add("fresh", [banked])
    clock.now = 4.9
    with pytest.raises(BankMissing):  # not yet checked again
        matcher.match("fresh", [near(banked, 2)])
    clock.now = 5.0
    assert matcher.match("fresh", [near(banked, 2)]).hash == banked.hash
    editor.remove("fresh", [banked.hash])
    clock.now = 10.0
    assert matcher.match("fresh", [near(banked, 2)]) is None, "emptied, the bank still exists"
    editor.remove("fresh")
    clock.now = 15.0
    with pytest.raises(BankMissing, match=r"^no bank named fresh$"):
        matcher.match("fresh", [near(banked, 2)])


def test_only_changed_banks_are_reloaded(redis_url, namespace, monkeypatch):
    clock = Clock()
    store = BankStore(redis_url, namespace=namespace)
    store.add("big", [entry(f"{i}.png") for i in range(50)])
    store.add("small", [entry("s.png")])
    matcher = BankMatcher(store, refresh_s=1, clock=clock)
    matcher.match("big", [bytes(32)])
    loaded: list[str] = []
    real_snapshot = store.snapshot
    monkeypatch.setattr(store, "snapshot", lambda bank: loaded.append(bank) or real_snapshot(bank))
    store.add("small", [entry("t.png")])
    clock.now = 1.0
    matcher.match("big", [bytes(32)])
    assert loaded == ["small"]
    clock.now = 2.0
    matcher.match("big", [bytes(32)])
    assert loaded == ["small"]  # version unchanged: nothing reloaded


def test_the_banks_threshold_decides(store):
    banked = entry("a.png")
    store.add("tight", [banked], threshold=8)
    matcher = BankMatcher(store)
    assert matcher.match("tight", [near(banked, 8)]).distance == 8
    assert matcher.match("tight", [near(banked, 9)]) is None


def test_best_of_several_images_wins(store):
    first, second = entry("first.png"), entry("second.png")
    store.add("pair", [first, second])
    found = BankMatcher(store).match("pair", [near(first, 20), near(second, 3), bytes(32)])
    assert (found.image, found.source, found.distance) == (1, "second.png", 3)


def test_an_empty_bank_matches_nothing_and_an_unknown_one_is_missing(store):
    store.add("empty", [])
    store.add("known-bad", [entry("a.png")])
    matcher = BankMatcher(store)
    assert matcher.match("empty", [bytes(32)]) is None
    assert matcher.match("empty", []) is None
    with pytest.raises(BankMissing) as caught:
        matcher.match("known-bda", [bytes(32)])
    assert caught.value.reason == "no bank named known-bda; did you mean known-bad?"
    assert caught.value.bank == "known-bda"
    with pytest.raises(BankMissing, match=r"^no bank named nothing-like-it$"):
        matcher.match("nothing-like-it", [])


def test_concurrent_matches_during_reloads_stay_correct(redis_url, namespace):
    store = BankStore(redis_url, namespace=namespace)
    stable = entry("stable.png")
    store.add("stable", [stable])
    matcher = BankMatcher(store, refresh_s=0)  # every call checks the version
    failures: list[object] = []

    def hammer() -> None:
        for _ in range(100):
            try:
                found = matcher.match("stable", [near(stable, 6)])
                if found is None or found.hash != stable.hash:
                    failures.append(found)
            except Exception as exc:  # collected: a thread's exception would be lost
                failures.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for i in range(20):
        store.add("moving", [entry(f"m{i}.png")])
    for thread in threads:
        thread.join()
    assert failures == []
    assert matcher.match("moving", [bytes.fromhex(store.entries("moving")[-1].hash)]) is not None


def test_outage_raises_banks_unavailable_then_recovers(redis_factory, namespace):
    server = redis_factory()
    clock = Clock()
    store = BankStore(server.url, namespace=namespace, timeout_s=0.5)
    banked = entry("a.png")
    store.add("known", [banked])
    matcher = BankMatcher(store, refresh_s=1, clock=clock)
    assert matcher.match("known", [near(banked, 1)]) is not None
    server.stop()
    with pytest.raises(BanksUnavailable) as caught:
        store.version()
    assert server.url in str(caught.value) and caught.value.stage == Stage.INFER
    clock.now = 1.0
    with pytest.raises(BanksUnavailable):
        matcher.match("known", [near(banked, 1)])
    with pytest.raises(BanksUnavailable):  # no back-off: every call while down tries again
        matcher.match("known", [near(banked, 1)])
    server.start()  # same port, no persistence: the banks are gone and the version restarts
    replacement = entry("b.png")
    store.add("known", [replacement])  # version 1 again, the number the matcher last saw
    assert matcher.match("known", [near(replacement, 1)]).source == "b.png"
    assert matcher.match("known", [near(banked, 1)]) is None


def test_password_is_not_in_the_outage_message(redis_factory, namespace):
    server = redis_factory()
    server.stop()
    url = server.url.replace("redis://", "redis://:hunter2@")
    with pytest.raises(BanksUnavailable) as caught:
        BankStore(url, namespace=namespace, timeout_s=0.5).banks()
    assert "hunter2" not in str(caught.value)
    assert "***@127.0.0.1" in str(caught.value)


def test_matching_goes_on_against_held_banks_while_one_thread_reloads(store, monkeypatch):
    clock = Clock()
    held = entry("held.png")
    store.add("known", [held])
    matcher = BankMatcher(store, refresh_s=1, clock=clock)
    assert matcher.match("known", [near(held, 1)]) is not None
    inside, release = threading.Event(), threading.Event()
    real_snapshot = store.snapshot

    def slow_snapshot(bank):
        inside.set()
        release.wait(timeout=30)
        return real_snapshot(bank)

    monkeypatch.setattr(store, "snapshot", slow_snapshot)
    added = entry("added.png")
    store.add("known", [added])
    clock.now = 1.0
    reloading = threading.Thread(target=matcher.match, args=("known", [bytes(32)]))
    reloading.start()
    assert inside.wait(timeout=30)
    # The reload is stuck inside Redis; this call must not wait for it.
    assert matcher.match("known", [near(held, 1)]).source == "held.png"
    assert matcher.match("known", [near(added, 1)]) is None
    release.set()
    reloading.join(timeout=30)
    assert matcher.match("known", [near(added, 1)]).source == "added.png"
