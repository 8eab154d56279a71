"""`VectorIndex` against a brute-force cosine search in numpy, exact and HNSW."""

from __future__ import annotations

import numpy as np
import pytest

from similar.index import VectorIndex, exact_limit

pytest.importorskip("faiss")


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def brute_force(ids: list[str], data: np.ndarray, query: np.ndarray, k: int) -> list[tuple]:
    distances = 1.0 - unit(data.astype(np.float64)) @ unit(query[None].astype(np.float64))[0]
    order = np.lexsort((np.array(ids), distances))[:k]
    return [(ids[n], distances[n]) for n in order]


def clustered(rng: np.random.Generator, count: int, dims: int, clusters: int) -> np.ndarray:
    centres = rng.standard_normal((clusters, dims))
    return centres[rng.integers(0, clusters, count)] + 0.5 * rng.standard_normal((count, dims))


def assert_same(found, expected) -> None:
    assert [n.post_id for n in found] == [post_id for post_id, _ in expected]
    np.testing.assert_allclose([n.distance for n in found], [d for _, d in expected], atol=1e-5)


def test_exact_search_matches_brute_force():
    rng = np.random.default_rng(1)
    data = rng.standard_normal((2_000, 64))
    ids = [f"p{n}" for n in range(len(data))]
    index = VectorIndex(64)
    index.add(ids, data)
    assert len(index) == 2_000 and not index.approximate
    for query in rng.standard_normal((30, 64)):
        assert_same(index.nearest(query, 10), brute_force(ids, data, query, 10))


def test_distances_are_cosine_and_ties_go_by_id():
    index = VectorIndex(2)
    index.add(["b", "a", "c"], [[2.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    found = index.nearest([3.0, 0.0], 3)
    assert [(n.post_id, round(n.distance, 6)) for n in found] == [("a", 0), ("b", 0), ("c", 2)]


def test_excluded_ids_are_never_returned_and_k_is_still_filled():
    rng = np.random.default_rng(2)
    data = rng.standard_normal((200, 16))
    ids = [f"p{n}" for n in range(200)]
    index = VectorIndex(16)
    index.add(ids, data)
    found = index.nearest(data[3], 5, exclude={"p3", "unknown"})
    assert len(found) == 5 and "p3" not in {n.post_id for n in found}
    expected = [row for row in brute_force(ids, data, data[3], 6) if row[0] != "p3"]
    assert_same(found, expected)


def test_adding_an_id_again_replaces_its_vector():
    index = VectorIndex(3)
    index.add(["a", "b"], [[1, 0, 0], [0, 1, 0]])
    index.add(["a"], [[0, 0, 5]])
    assert len(index) == 2
    assert [n.post_id for n in index.nearest([1, 0, 0], 5)] == ["a", "b"]
    assert index.nearest([1, 0, 0], 1)[0].distance == pytest.approx(1.0)
    np.testing.assert_allclose(index.vector("a"), [0, 0, 1])
    index.add(["c", "c"], [[1, 0, 0], [0, 1, 0]])  # the later of one call wins too
    assert index.nearest([0, 1, 0], 2)[1].post_id == "c" and len(index) == 3


@pytest.mark.parametrize(
    "vector, words",
    [
        ([0.0, 0.0, 0.0], "zero"),
        ([1.0, float("nan"), 0.0], "NaN"),
        ([float("inf"), 0.0, 0.0], "inf"),
        ([1.0, 2.0], "3 dims"),
    ],
)
def test_bad_vectors_are_refused_naming_the_post(vector, words):
    index = VectorIndex(3)
    with pytest.raises(ValueError, match=f"post-7: .*{words}"):
        index.add(["ok", "post-7"], [[1.0, 0.0, 0.0], vector])
    assert len(index) == 0 and index.nearest([1, 0, 0], 3) == []


def test_removed_and_replaced_vectors_stay_gone_across_rebuilds():
    rng = np.random.default_rng(3)
    data = rng.standard_normal((3_000, 8))
    ids = [f"p{n}" for n in range(3_000)]
    index = VectorIndex(8)
    index.add(ids, data)
    assert index.remove([*ids[:2_000], "never-held"]) == 2_000  # dead > live: rebuilt
    index.add(ids[2_000:2_500], data[:500])  # replaced, not rebuilt yet
    data[2_000:2_500] = data[:500]
    for query in rng.standard_normal((10, 8)):
        assert_same(index.nearest(query, 20), brute_force(ids[2_000:], data[2_000:], query, 20))


def test_nothing_to_find():
    index = VectorIndex(4)
    assert index.nearest([1, 0, 0, 0], 5) == []
    index.add(["a"], [[1, 0, 0, 0]])
    assert index.nearest([1, 0, 0, 0], 0) == []
    assert index.nearest([1, 0, 0, 0], 3, exclude=["a"]) == []
    with pytest.raises(ValueError, match=r"the query: .*4 dims"):
        index.nearest([1, 0, 0], 1)
    with pytest.raises(ValueError, match="at least one dimension"):
        VectorIndex(0)


def test_the_exact_limit_follows_the_floats_scanned():
    assert exact_limit(576) == 111_111 and exact_limit(4_096) == 15_625


def test_ivf_above_the_limit_reaches_recall_095():
    rng = np.random.default_rng(4)
    data = clustered(rng, 20_200, 64, clusters=1_000)  # waves of about 20 near-duplicates
    data, queries = data[:20_000], data[20_000:]
    ids = [f"p{n}" for n in range(len(data))]
    index = VectorIndex(64, exact_up_to=5_000)
    index.add(ids[:4_000], data[:4_000])
    assert not index.approximate
    index.add(ids[4_000:], data[4_000:])  # past the limit: lists trained on the 20,000
    assert index.approximate and len(index) == 20_000
    hits = sum(
        len(
            {n.post_id for n in index.nearest(q, 10)}
            & {i for i, _ in brute_force(ids, data, q, 10)}
        )
        for q in queries
    )
    assert hits / (10 * len(queries)) >= 0.95


def test_ivf_skips_replaced_vectors_and_turns_exact_again_when_small():
    rng = np.random.default_rng(5)
    data = clustered(rng, 3_000, 16, clusters=50)
    ids = [f"p{n}" for n in range(3_000)]
    index = VectorIndex(16, exact_up_to=1_000)
    index.add(ids, data)
    index.add(["p0"], [-data[0]])  # the old p0 is dead in its list
    found = index.nearest(data[0], 3)
    assert "p0" not in [n.post_id for n in found] and index.approximate
    np.testing.assert_allclose(index.vector("p0"), -data[0] / np.linalg.norm(data[0]), rtol=1e-5)
    index.remove(ids[1:2_900])  # rebuilt with 101 live: exact again
    assert not index.approximate and len(index) == 101
    assert index.nearest(-data[0], 1)[0].post_id == "p0"
    index.remove(ids)
    assert len(index) == 0 and index.nearest(data[0], 3) == []
