"""`HashIndex`: the closest 256-bit hash within a Hamming threshold, without a linear scan.

>>> index = HashIndex([bytes(32), b"\\xff" * 32])
>>> three_bits_off = b"\\x07" + bytes(31)
>>> index.nearest([three_bits_off, b"\\x0f" * 32], threshold=31)
[(0, 3), None]

faiss is imported only when an index is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from operators.specialists.pdq import HASH_BYTES, MATCH_THRESHOLD

HASH_BITS = HASH_BYTES * 8
# From this many hashes on, 11 tables of 23 bits beat Meta's 16 x 16 (measured, see HashIndex).
LARGE_INDEX = 200_000
# Past 63 bits, lookups stop being cheap (the flips per table explode) and PDQ's false matches
# grow: no bank needs it.
MAX_THRESHOLD = 63


class HashIndex:
    """Closest 256-bit hash within a Hamming threshold, via faiss multi-index hashing.

    Each hash is cut into t substrings of b bits, each the key of one hash table. Two hashes at
    distance d < t * (f + 1) agree, by pigeonhole, on some substring to within f bits, so
    probing every table with all flips of up to f = max_threshold // t bits finds *every* hash
    within `max_threshold`: recall is exact there, not approximate. What varies is speed and
    memory. With real (non-uniform) PDQ hashes some buckets hold more than their share, so
    lookups slow down, but never miss. A threshold above `max_threshold` raises.

    Layouts (`tables`), measured on uniformly random hashes, 2 cores, threshold 31:
    16 x 16 bits (Meta's ThreatExchange layout, 272 probes): lean and fastest for small
    banks, but at 1M hashes ~15 candidates a probe: 500-900 lookups/s (no faster than a
    2-core linear scan there), 335 MB, 5 s build. 11 x 23 bits (253 bits, 3,047 probes, few
    candidates): 1,900-3,300 lookups/s at 1M but 944 MB and 15 s build; slower below ~200k.
    The default picks by size (`LARGE_INDEX`); `tables` overrides it.
    """

    def __init__(
        self,
        hashes: Sequence[bytes],
        *,
        max_threshold: int = MATCH_THRESHOLD,
        tables: int | None = None,
    ) -> None:
        check_threshold(max_threshold)
        self.max_threshold = max_threshold
        self._size = len(hashes)
        large = len(hashes) >= LARGE_INDEX and max_threshold <= 32  # 11 * 3 > 32
        self.tables = tables or (11 if large else 16)
        if not 4 <= self.tables <= 32:  # faiss keys a table by at most 64 bits
            raise ValueError(f"tables must be 4..32, got {self.tables}")
        bits = HASH_BITS // self.tables
        self._index = _faiss().IndexBinaryMultiHash(HASH_BITS, self.tables, bits)
        self._index.nflip = max_threshold // self.tables
        if hashes:
            self._index.add(_as_array(hashes))

    def __len__(self) -> int:
        """How many hashes the index holds."""
        return self._size

    def nearest(self, queries: Sequence[bytes], threshold: int) -> list[tuple[int, int] | None]:
        """Per query, (position in the indexed hashes, distance) of the closest within threshold."""
        if not 0 <= threshold <= self.max_threshold:
            raise ValueError(f"threshold {threshold} is outside 0..{self.max_threshold}")
        if not queries:
            return []
        array = _as_array(queries)
        if not self._size:
            return [None] * len(queries)
        # k=1 over the probed buckets: every hash within the threshold is a candidate, so the
        # best candidate is the true nearest whenever any hash lies within the threshold.
        distances, positions = self._index.search(array, 1)
        return [
            (int(position), int(distance)) if position >= 0 and distance <= threshold else None
            for distance, position in zip(distances[:, 0], positions[:, 0], strict=True)
        ]


def check_threshold(threshold: int) -> None:
    """Refuse a match threshold outside 0..MAX_THRESHOLD bits."""
    if not 0 <= threshold <= MAX_THRESHOLD:
        raise ValueError(f"threshold {threshold} is outside 0..{MAX_THRESHOLD} bits (PDQ: 31)")


def _as_array(hashes: Sequence[bytes]) -> np.ndarray:
    wrong = next((h for h in hashes if len(h) != HASH_BYTES), None)
    if wrong is not None:
        raise ValueError(f"hashes are {HASH_BYTES} bytes each, got one of {len(wrong)} bytes")
    return np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(len(hashes), HASH_BYTES)


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "hash banks need faiss: pip install 'vlm-moderation[specialists]'"
        ) from exc
    return faiss
