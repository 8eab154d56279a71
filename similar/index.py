"""`VectorIndex`: post embeddings in memory, the nearest ones to a vector by cosine distance.

Vectors are stored L2-normalised as float32, so inner product is cosine similarity and the
distance reported is `1 - dot`, in [0, 2]. Each post id holds one vector: adding an id again
replaces it. The old position is marked dead rather than deleted (positions are the labels
faiss answers with, and deleting from a flat index renumbers them); searches pass faiss a
bitmap of the live positions, so a dead one is never returned and costs nothing in `k`, and the
index is rebuilt from its live vectors once the dead outnumber the live.

Exact or approximate. The index is exact (`IndexFlatIP`) while it holds at most
`exact_limit(dims)` vectors, 64M floats (111,111 vectors at 576 dims, 15,625 at 4,096), and IVF
above (`IndexIVFFlat`, inner product, 4·√N lists, 16 probed). An exact query scans every
vector on one core, so its cost grows with vectors x dims. Measured with
`python bench/similar.py --sizes 100000 1000000 --dims 576` (and `--ef` with no values for the
nprobe=16 rows): 2-core dev container shared with other work, faiss 1.15.1, 2 OpenMP threads,
1,000 gaussian clusters ("waves") of unit vectors, 1,000 fresh queries one at a time, k=10;
"10th" is how much farther the 10th neighbour found lies than the exact 10th:

    vectors    index                 build s  ms/query   recall@10  10th
    100,000    exact IndexFlatIP         0.1  17.7-27.9      1.000
    100,000    HNSW M=32 ef=128         17.6       0.34      0.996  +0.02%
    100,000    IVF1264 nprobe=16         3.9       0.22      1.000  +0.00%
    1,000,000  exact IndexFlatIP         1.5  170-185        1.000
    1,000,000  HNSW M=32 ef=128    168-225         0.59      0.838  +11.9%
    1,000,000  HNSW M=32 ef=256                    0.82      0.889  +4.6%
    1,000,000  IVF4000 nprobe=8         60.1       0.48      1.000  +0.00%
    1,000,000  IVF4000 nprobe=16                   0.81      1.000  +0.00%

Why the switch sits at 64M floats: below it an exact query costs under about 30 ms, which a
console page affords, with no build and no recall lost, so the default window (100,000 posts
of SmolVLM-256M's 576 dims) stays exact. At 1M x 576 it costs 170-185 ms and IVF answers the
same neighbours 200x faster. HNSW, the first candidate, lost whole waves on this data (its
greedy walk ends in the wrong cluster: a 10th neighbour 12% farther on average), builds 3x
slower and cannot delete. IVF's weak side is diffuse data without clusters (recall 0.75 on 20k
16-dim gaussian vectors at nprobe 16); a near-duplicate, close to its query, mostly still lies
in a list probed. The lists are k-means centres of the vectors held, made again at every
rebuild: when the dead outnumber the live (about once per turn of a `SharedIndex` window) and
when the index has grown 4x, so new waves get lists of their own. Back to exact comes only at
a rebuild with half the limit or fewer, so a size hovering at the limit does not flip.

>>> index = VectorIndex(2)
>>> index.add(["a", "b"], [[1.0, 0.0], [0.0, 1.0]])
>>> [(n.post_id, round(n.distance, 3)) for n in index.nearest([1.0, 0.1], 2)]
[('a', 0.005), ('b', 0.9)]
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

EXACT_MAX_FLOATS = 64_000_000  # vectors x dims an exact scan covers in about 30 ms on one core
NPROBE = 16  # IVF lists searched per query
LISTS_PER_SQRT = 4  # 4·√N lists, so a list holds about √N/4 vectors
TRAIN_PER_LIST = 40  # k-means sample per list (faiss warns below 39)
RETRAIN_GROWTH = 4  # the lists are made again once the index holds 4x what they were made for
COMPACT_MIN_DEAD = 1_024  # below this, a rebuild costs more than the dead do

Vector = np.ndarray | Sequence[float]
Vectors = np.ndarray | Sequence[Vector]


@dataclass(frozen=True)
class Neighbour:
    """A post near the query, and its cosine distance (0 the same direction, 2 opposite)."""

    post_id: str
    distance: float


def exact_limit(dims: int) -> int:
    """How many vectors of `dims` the index keeps exact before it turns to IVF."""
    return max(1, EXACT_MAX_FLOATS // dims)


class VectorIndex:
    """Unit vectors by post id, searched exactly up to `exact_up_to` vectors and by IVF above.

    Not thread-safe: a search during an add may read memory the add moves (`SharedIndex`
    holds one lock around both).
    """

    def __init__(self, dims: int, *, exact_up_to: int | None = None, nprobe: int = NPROBE) -> None:
        if dims < 1:
            raise ValueError(f"an index needs at least one dimension, not {dims}")
        self.dims = dims
        self.exact_up_to = exact_limit(dims) if exact_up_to is None else exact_up_to
        self.nprobe = nprobe
        self._faiss = _faiss()
        self._index: Any = self._faiss.IndexFlatIP(dims)
        self._ids: list[str | None] = []  # by position; None once replaced or removed
        self._positions: dict[str, int] = {}
        self._alive = np.zeros(0, dtype=bool)
        self._live_bits: np.ndarray | None = None  # packed `_alive`, made again after a change
        self._built_for = 0  # live vectors at the last rebuild, which sized the IVF lists

    def __len__(self) -> int:
        return len(self._positions)

    def __contains__(self, post_id: object) -> bool:
        return post_id in self._positions

    @property
    def approximate(self) -> bool:
        """Whether searches probe IVF lists (True) or scan every vector (False)."""
        return not isinstance(self._index, self._faiss.IndexFlat)

    def add(self, ids: Sequence[str], vectors: Vectors) -> None:
        """Add (or replace) one vector per id; ValueError naming the id of a bad vector."""
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids but {len(vectors)} vectors")
        if not ids:
            return
        matrix = self._unit_rows(ids, vectors)
        self._alive = np.concatenate([self._alive, np.ones(len(ids), dtype=bool)])
        for post_id in ids:  # one by one: an id twice in `ids` kills its own first position
            self._kill(self._positions.get(post_id))
            self._positions[post_id] = len(self._ids)
            self._ids.append(post_id)
        self._index.add(matrix)
        self._after_change()

    def remove(self, ids: Collection[str]) -> int:
        """Forget these ids (unknown ones are ignored); how many were held."""
        held = [self._positions.pop(post_id) for post_id in ids if post_id in self._positions]
        for position in held:
            self._kill(position)
        self._after_change()
        return len(held)

    def nearest(self, vector: Vector, k: int, *, exclude: Collection[str] = ()) -> list[Neighbour]:
        """The `k` nearest posts, by distance then id; ids in `exclude` are never returned."""
        query = self._unit_rows(["the query"], [vector])
        excluded = set(exclude)
        ask = min(k + len(excluded & self._positions.keys()), len(self))
        if k <= 0 or ask <= 0:
            return []
        scores, labels = self._index.search(query, ask, params=self._search_params())
        found = [
            Neighbour(post_id, float(np.clip(1.0 - score, 0.0, 2.0)))
            for score, label in zip(scores[0], labels[0], strict=True)
            if label >= 0 and (post_id := self._ids[label]) is not None
            if post_id not in excluded
        ]
        found.sort(key=lambda neighbour: (neighbour.distance, neighbour.post_id))
        return found[:k]

    def vector(self, post_id: str) -> np.ndarray | None:
        """The post's vector as stored (unit length, float32), or None if not held."""
        position = self._positions.get(post_id)
        return None if position is None else np.asarray(self._index.reconstruct(position))

    def _unit_rows(self, ids: Sequence[str], vectors: Vectors) -> np.ndarray:
        """The vectors as a float32 matrix of unit rows, or ValueError naming the bad id."""
        rows = [np.asarray(row, dtype=np.float64) for row in vectors]
        for post_id, row in zip(ids, rows, strict=True):
            if row.shape != (self.dims,):
                raise ValueError(f"{post_id}: {row.shape} is not a vector of {self.dims} dims")
        matrix = np.stack(rows)
        norms = np.linalg.norm(matrix, axis=1)
        # NaN or inf anywhere makes the norm NaN or inf; float64 keeps large values finite.
        bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
        if bad.size:
            raise ValueError(f"{ids[bad[0]]}: the vector is zero or holds NaN or inf")
        return np.ascontiguousarray(matrix / norms[:, None], dtype=np.float32)

    def _kill(self, position: int | None) -> None:
        if position is not None:
            self._ids[position] = None
            self._alive[position] = False

    def _after_change(self) -> None:
        self._live_bits = None
        if self._rebuild_due():
            self._rebuild()

    def _rebuild_due(self) -> bool:
        """Past the exact limit, dead outnumbering live, or IVF lists made for a quarter of now."""
        dead = len(self._ids) - len(self)
        if dead > COMPACT_MIN_DEAD and dead > len(self):
            return True
        if not self.approximate:
            return len(self) > self.exact_up_to
        return len(self) > RETRAIN_GROWTH * self._built_for

    def _rebuild(self) -> None:
        """A fresh index of the live vectors, exact or IVF (lists trained on them) as fits."""
        positions = np.flatnonzero(self._alive)
        vectors = self._index.reconstruct_batch(positions)
        ids = [self._ids[position] for position in positions]
        stays = self.approximate and len(ids) > self.exact_up_to // 2
        if stays or len(ids) > self.exact_up_to:
            self._index = self._ivf(vectors)
        else:
            self._index = self._faiss.IndexFlatIP(self.dims)
        self._index.add(vectors)
        self._ids = list(ids)
        self._positions = {post_id: n for n, post_id in enumerate(ids) if post_id is not None}
        self._alive = np.ones(len(ids), dtype=bool)
        self._built_for = len(ids)

    def _ivf(self, vectors: np.ndarray) -> Any:
        """An empty IVF index whose lists are k-means centres of a sample of `vectors`."""
        # 4·√N lists, but never so many that the sample gives a list fewer than 40 vectors.
        wanted = int(LISTS_PER_SQRT * math.sqrt(len(vectors)))
        lists = max(1, min(wanted, len(vectors) // TRAIN_PER_LIST))
        quantizer = self._faiss.IndexFlatIP(self.dims)
        metric = self._faiss.METRIC_INNER_PRODUCT
        index = self._faiss.IndexIVFFlat(quantizer, self.dims, lists, metric)
        sample = min(len(vectors), TRAIN_PER_LIST * lists)
        # A fixed seed: the same window gives the same lists in every console process.
        index.train(vectors[np.random.default_rng(0).choice(len(vectors), sample, replace=False)])
        index.make_direct_map()  # `vector()` and the next rebuild read vectors back by position
        index.nprobe = self.nprobe
        return index

    def _search_params(self) -> Any:
        """faiss search parameters: the live bitmap when any position is dead, and nprobe."""
        selector = None
        if len(self._ids) > len(self):
            if self._live_bits is None:
                self._live_bits = np.packbits(self._alive, bitorder="little")
            # The selector points into `_live_bits`, which lives on until the next change.
            selector = self._faiss.IDSelectorBitmap(
                len(self._ids), self._faiss.swig_ptr(self._live_bits)
            )
        if self.approximate:
            return self._faiss.SearchParametersIVF(sel=selector, nprobe=self.nprobe)
        return None if selector is None else self._faiss.SearchParameters(sel=selector)


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("similar posts need faiss: pip install 'vlm-moderation[review]'") from exc
    return faiss
