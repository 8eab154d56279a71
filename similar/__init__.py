"""Similar posts: the nearest earlier posts to a post, by post embedding, for the review console.

Modules:

- `similar.index`: `VectorIndex`, an in-memory faiss index of unit vectors (cosine distance),
  exact up to a size and IVF above it; `Neighbour`.
- `similar.store`: `SimilarStore`, the shared truth, one Redis stream of recent post embeddings
  per model, capped near `window` entries; `SimilarEntry`.
- `similar.shared`: `SharedIndex`, a process's `VectorIndex` kept up with the store by reading
  only the entries added since its last look.
- `similar.exceptions`: `SimilarError`, `SimilarUnavailable`, `DimsMismatch`.

faiss (the `review` extra) is imported when an index is built, Redis when a store is.
"""

from __future__ import annotations

from similar.exceptions import DimsMismatch, SimilarError, SimilarUnavailable
from similar.index import Neighbour, VectorIndex
from similar.shared import SharedIndex
from similar.store import SimilarEntry, SimilarStore

__all__ = [
    "DimsMismatch",
    "Neighbour",
    "SharedIndex",
    "SimilarEntry",
    "SimilarError",
    "SimilarStore",
    "SimilarUnavailable",
    "VectorIndex",
]
