"""`SimilarStore` and `SharedIndex` on a real Redis: two console processes sharing one window,
the window trimming under a reader, malformed entries, dims changing, Redis down."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from similar import DimsMismatch, SharedIndex, SimilarEntry, SimilarStore, SimilarUnavailable

pytest.importorskip("faiss")

MODEL = "HuggingFaceTB/SmolVLM-256M:v1"  # `/` and `:` in a model name


@pytest.fixture
def stores(redis_url):
    """Stores on one fresh namespace, as separate processes would open them; keys removed after."""
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    made: list[SimilarStore] = []

    def make(**options) -> SimilarStore:
        made.append(SimilarStore(redis_url, namespace=namespace, **options))
        return made[-1]

    yield make
    if made:
        client = made[0]._client
        for key in client.scan_iter(match=f"{namespace}:*"):
            client.delete(key)
    for store in made:
        store.close()


def entries(prefix: str, vectors: np.ndarray, model: str = MODEL) -> list[SimilarEntry]:
    return [
        SimilarEntry(f"{prefix}{n}", model, tuple(v.tolist()), f"task:{prefix}{n}", "spam", 1e9 + n)
        for n, v in enumerate(vectors)
    ]


def ids_of(found) -> set[str]:
    return {neighbour.post_id for neighbour, _ in found}


def window_ids(store: SimilarStore, model: str = MODEL) -> set[str]:
    return {e.post_id for e in store.read_since(model)[0]}


def test_entries_round_trip_per_model(stores):
    store = stores()
    vectors = np.random.default_rng(0).standard_normal((3, 8))
    store.add(entries("p", vectors) + entries("q", vectors[:1], model="other"))
    read, last = store.read_since(MODEL)
    assert [e.post_id for e in read] == ["p0", "p1", "p2"] and last == read[-1].stream_id
    assert read[1].key == "task:p1" and read[1].queue == "spam" and read[1].at == 1e9 + 1
    np.testing.assert_allclose(read[2].vector, vectors[2], rtol=1e-6)
    assert store.read_since(MODEL, last) == ([], last)
    assert store.first_id(MODEL) == read[0].stream_id
    assert [e.post_id for e in store.read_since("other")[0]] == ["q0"]
    assert store.first_id("never-written") is None


def test_two_processes_see_each_others_posts(stores):
    one, two = stores(), stores()
    console_one = SharedIndex(one, MODEL, refresh_s=0)
    console_two = SharedIndex(two, MODEL, refresh_s=0)
    rng = np.random.default_rng(1)
    first, second = rng.standard_normal((20, 16)), rng.standard_normal((20, 16))
    assert console_two.nearest(first[0], 5) == []
    one.add(entries("a", first))
    neighbour, entry = console_two.nearest(first[3], 1)[0]
    assert neighbour.post_id == "a3" and neighbour.distance == pytest.approx(0, abs=1e-6)
    assert (entry.key, entry.queue, entry.at) == ("task:a3", "spam", 1e9 + 3)
    two.add(entries("b", second))
    assert ids_of(console_one.nearest(second[7], 40, exclude=["b7"])) == ids_of(
        console_two.nearest(second[7], 40)
    ) - {"b7"}
    assert console_one.entry("b7").key == "task:b7" and console_one.entry("zz") is None
    np.testing.assert_allclose(
        console_one.vector("b7"), second[7] / np.linalg.norm(second[7]), rtol=1e-5
    )


def test_a_reader_refreshes_only_when_refresh_s_has_passed(stores):
    store = stores()
    now = [100.0]
    console = SharedIndex(store, MODEL, refresh_s=5, clock=lambda: now[0])
    vectors = np.eye(4)
    store.add(entries("p", vectors[:2]))
    assert len(console.nearest(vectors[0], 10)) == 2
    store.add(entries("q", vectors[2:]))
    now[0] += 4.9
    assert len(console.nearest(vectors[0], 10)) == 2
    now[0] += 0.1
    assert len(console.nearest(vectors[0], 10)) == 4


def test_a_reader_that_fell_behind_the_window_starts_again(stores):
    store = stores(window=50)
    behind, keeping_up = SharedIndex(store, MODEL), SharedIndex(store, MODEL, refresh_s=0)
    rng = np.random.default_rng(2)
    store.add(entries("early", rng.standard_normal((10, 8))))
    behind.refresh()
    assert len(behind) == 10
    for batch in range(10):
        store.add(entries(f"late{batch}-", rng.standard_normal((20, 8))))
        keeping_up.refresh()
    in_window = window_ids(store)
    assert len(in_window) < 210 and not any(p.startswith("early") for p in in_window)
    held = behind._index
    behind.refresh()
    assert behind._index is not held  # started again from the window, not added to the old
    query = rng.standard_normal(8)
    assert ids_of(behind.nearest(query, 1_000)) == in_window == set(behind._entries)
    assert ids_of(keeping_up.nearest(query, 1_000)) == in_window  # the trimmed are forgotten


def test_malformed_entries_are_skipped_and_counted(stores):
    store = stores()
    good = entries("p", np.eye(3))
    store.add(good[:1])
    key = store.key(MODEL)
    fields = good[1].fields()
    store._client.xadd(key, {**fields, "vec": b"\x00\x01\x02"})  # not whole floats
    store._client.xadd(key, {**fields, "vec": np.zeros(3, "<f4").tobytes()})
    store._client.xadd(key, {**fields, "vec": np.array([np.nan, 1, 0], "<f4").tobytes()})
    store._client.xadd(key, {"post": b"\xff\xfe", "vec": fields["vec"]})
    store._client.xadd(key, {**fields, "at": b"yesterday"})
    store.add(good[1:])
    console = SharedIndex(store, MODEL, refresh_s=0)
    assert ids_of(console.nearest([1, 1, 1], 10)) == {"p0", "p1", "p2"}
    assert store.malformed == 5


def test_other_dims_are_skipped_and_a_new_model_takes_over_the_window(stores):
    store = stores(window=20)
    console = SharedIndex(store, MODEL, refresh_s=0)
    rng = np.random.default_rng(3)
    store.add(entries("old", rng.standard_normal((5, 4))))
    store.add(entries("new-a", rng.standard_normal((3, 6))))
    assert ids_of(console.nearest(rng.standard_normal(4), 10)) == {f"old{n}" for n in range(5)}
    assert console.other_dims == 3
    with pytest.raises(DimsMismatch, match="hold 4-dim vectors"):
        console.nearest(rng.standard_normal(6), 3)
    for n in range(400):  # until the old entries are trimmed and the index follows the new
        store.add(entries(f"new{n}-", rng.standard_normal((1, 6))))
        console.refresh()
        if console._index.dims == 6:
            break
    else:
        pytest.fail("the window never turned over to the new dims")
    assert store.window_start(MODEL).dims == 6
    assert ids_of(console.nearest(rng.standard_normal(6), 1_000)) == window_ids(store)


def test_redis_unreachable_is_said_in_one_line():
    store = SimilarStore("redis://:secret@127.0.0.1:1/0", timeout_s=0.5)
    console = SharedIndex(store, MODEL)
    with pytest.raises(SimilarUnavailable) as caught:
        console.nearest([1.0, 0.0], 3)
    reason = caught.value.reason
    expected = "similar posts unavailable: Redis at redis://***@127.0.0.1:1/0 failed: "
    assert reason.startswith(expected) and "\n" not in reason
    assert "secret" not in reason
    with pytest.raises(SimilarUnavailable, match="Redis at"):
        store.add(entries("p", np.eye(2)))
    with pytest.raises(SimilarUnavailable):
        console.entry("p0")  # still down: every call tries again
