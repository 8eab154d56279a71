"""HashIndex: exact near-duplicate lookup within the threshold, checked against brute force."""

from __future__ import annotations

import doctest

import faiss
import numpy as np
import pytest

from contracts.services import redact_url
from operators.specialists import hashindex
from operators.specialists.hashbank import BankEntry
from operators.specialists.hashindex import HashIndex, check_threshold
from operators.specialists.pdq import PdqHash, hamming


def random_hashes(rng: np.random.Generator, count: int) -> list[bytes]:
    return [row.tobytes() for row in rng.integers(0, 256, (count, 32), dtype=np.uint8)]


def flip_bits(rng: np.random.Generator, value: bytes, count: int) -> bytes:
    """`value` with exactly `count` distinct bits flipped."""
    bits = np.unpackbits(np.frombuffer(value, dtype=np.uint8))
    bits[rng.choice(256, count, replace=False)] ^= 1
    return np.packbits(bits).tobytes()


@pytest.fixture(scope="module")
def bank() -> list[bytes]:
    return random_hashes(np.random.default_rng(7), 5_000)


@pytest.fixture(scope="module", params=[16, 11], ids=["16x16-bits", "11x23-bits"])
def index(request, bank) -> HashIndex:
    return HashIndex(bank, tables=request.param)


def test_finds_near_duplicates_at_every_distance_up_to_31(bank, index):
    rng = np.random.default_rng(1)
    for distance in range(32):
        for member in rng.choice(len(bank), 20, replace=False):
            query = flip_bits(rng, bank[member], distance)
            assert index.nearest([query], threshold=31) == [(int(member), distance)]


def test_does_not_report_hashes_beyond_the_threshold(bank, index):
    rng = np.random.default_rng(2)
    for distance in (32, 33, 40, 60):
        query = flip_bits(rng, bank[distance], distance)
        assert index.nearest([query], threshold=31) == [None]
    tight = flip_bits(rng, bank[3], 12)
    assert index.nearest([tight], threshold=11) == [None]
    assert index.nearest([tight], threshold=12) == [(3, 12)]


def test_a_batch_keeps_query_order_and_mixes_hits_and_misses(bank, index):
    rng = np.random.default_rng(3)
    queries = [flip_bits(rng, bank[10], 5), random_hashes(rng, 1)[0], bank[20]]
    assert index.nearest(queries, threshold=31) == [(10, 5), None, (20, 0)]


def test_empty_index_and_empty_batch():
    empty = HashIndex([])
    assert len(empty) == 0
    assert empty.nearest([bytes(32), b"\xff" * 32], threshold=31) == [None, None]
    assert empty.nearest([], threshold=31) == []


def test_agrees_with_brute_force_on_random_near_duplicates(bank, index):
    rng = np.random.default_rng(4)
    near = [
        flip_bits(rng, bank[m], int(d))
        for m, d in zip(rng.choice(len(bank), 2_000), rng.integers(0, 48, 2_000), strict=True)
    ]
    queries = near + random_hashes(rng, 1_000)
    flat = faiss.IndexBinaryFlat(256)
    flat.add(np.frombuffer(b"".join(bank), dtype=np.uint8).reshape(-1, 32))
    truth, _ = flat.search(np.frombuffer(b"".join(queries), dtype=np.uint8).reshape(-1, 32), 1)
    found = index.nearest(queries, threshold=31)
    for query, expected, hit in zip(queries, truth[:, 0], found, strict=True):
        if expected <= 31:
            assert hit is not None and hit[1] == expected
            assert hamming(bank[hit[0]], query) == expected
        else:
            assert hit is None
    assert sum(hit is not None for hit in found) > 1_000  # the test exercised both branches


def test_wider_max_threshold_stays_exact(bank):
    rng = np.random.default_rng(5)
    wide = HashIndex(bank[:500], max_threshold=47)
    for distance in (32, 40, 47):
        query = flip_bits(rng, bank[distance], distance)
        assert wide.nearest([query], threshold=47) == [(distance, distance)]


def test_layout_follows_size_and_threshold(bank, monkeypatch):
    assert HashIndex(bank[:100]).tables == 16
    monkeypatch.setattr(hashindex, "LARGE_INDEX", 100)
    assert HashIndex(bank[:100]).tables == 11
    assert HashIndex(bank[:100], max_threshold=40).tables == 16  # 11 tables would need 3 flips
    with pytest.raises(ValueError, match="tables"):
        HashIndex(bank[:100], tables=2)


def test_threshold_above_what_the_index_searches_exactly_is_refused(index):
    with pytest.raises(ValueError, match=r"outside 0\.\.31"):
        index.nearest([bytes(32)], threshold=32)
    with pytest.raises(ValueError, match="outside"):
        HashIndex([], max_threshold=64)


def test_hashes_of_the_wrong_size_are_refused(index):
    with pytest.raises(ValueError, match="32 bytes"):
        index.nearest([bytes(31)], threshold=31)
    with pytest.raises(ValueError, match="32 bytes"):
        HashIndex([bytes(32), bytes(33)])


def test_module_example_runs():
    assert doctest.testmod(hashindex).failed == 0


def test_threshold_range():
    check_threshold(0)
    check_threshold(63)
    for bad in (-1, 64, 256):
        with pytest.raises(ValueError, match="threshold"):
            check_threshold(bad)


def test_entry_normalises_the_hash_and_round_trips_through_json():
    entry = BankEntry("AB" * 32, 90, "scam.png", "2024-01-01T00:00:00+00:00")
    assert entry.hash == "ab" * 32
    assert BankEntry.from_json(entry.hash, entry.to_json()) == entry
    assert BankEntry.of(PdqHash(bytes(32), 77), "x.png").added_at.endswith("+00:00")
    with pytest.raises(ValueError, match="64 hex digits"):
        BankEntry("nope", 90, "x.png", "2024-01-01T00:00:00+00:00")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@cache:6379/1", "redis://***@cache:6379/1"),
        ("redis://bob:s3cret@cache:6379", "redis://bob:***@cache:6379"),
        ("rediss://s3cret@cache", "rediss://***@cache"),
        ("redis://cache:6379/0?password=s3cret", "redis://cache:6379/0"),
    ],
)
def test_redacted_url_never_shows_the_password(url, shown):
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)
