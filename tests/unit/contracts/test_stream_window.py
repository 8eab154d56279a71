"""StreamWindow, and the two windows built on it: entries read back in order across chunks,
malformed ones counted and skipped, the cap passed to Redis, and an unreachable Redis said in
one line with the password masked."""

from __future__ import annotations

import pytest

from contracts.services import reaching_redis, redact_url
from heads.recent import RecentEmbedding, RecentEmbeddings, RecentEmbeddingsUnavailable
from operators.specialists.recent_images import (
    RecentImage,
    RecentImages,
    RecentImagesUnavailable,
)

UNREACHABLE = "redis://:hunter2@127.0.0.1:1/0"


class StreamClient:
    """A Redis stream in memory, with the calls a window makes (ids as Redis gives them)."""

    def __init__(self, as_bytes: bool) -> None:
        self.as_bytes = as_bytes
        self.entries: list[tuple[str, dict]] = []
        self.maxlens: set[int] = set()

    def pipeline(self, transaction: bool = True) -> StreamClient:
        return self

    def xadd(self, key, fields, maxlen, approximate) -> None:
        self.maxlens.add(maxlen)
        stored = {
            k: v.encode() if self.as_bytes and isinstance(v, str) else v for k, v in fields.items()
        }
        self.entries.append((f"{len(self.entries) + 1}-0", stored))

    def execute(self) -> None:
        pass

    def xrange(self, key, min, count):
        text = min.decode() if isinstance(min, bytes) else min
        after = 0 if text == "-" else int(text.lstrip("(").split("-")[0])
        chunk = [(i, f) for i, f in self.entries if int(i.split("-")[0]) > after][:count]
        return [(i.encode() if self.as_bytes else i, f) for i, f in chunk]


def images(count: int) -> list[RecentImage]:
    return [RecentImage(f"p{n}", "posts", 0, n, (f"{n:064x}",)) for n in range(count)]


def test_entries_come_back_oldest_first_across_chunks_and_malformed_ones_are_counted():
    window = RecentImages("redis://127.0.0.1:1/0", window=50)
    window._client = StreamClient(as_bytes=False)  # the connection is made on first use
    window.read_chunk = 3
    window.add(images(7))
    window._client.entries.insert(2, ("2-5", {"post": "p-bad", "hashes": "zz"}))
    read, malformed = window.read()
    assert [e.post_id for e in read] == [f"p{n}" for n in range(7)]
    assert malformed == 1
    assert window._client.maxlens == {50}


def test_a_window_of_bytes_reads_its_entries_back():
    window = RecentEmbeddings("redis://127.0.0.1:1/0")
    window._client = StreamClient(as_bytes=True)
    window.read_chunk = 2
    sent = [RecentEmbedding(f"p{n}", "posts", 1, n, "m", (0.5, float(n))) for n in range(5)]
    window.add(sent)
    assert window.read() == (sent, 0)


@pytest.mark.parametrize(
    ("window", "error", "what"),
    [
        (RecentImages, RecentImagesUnavailable, "recent-images window"),
        (RecentEmbeddings, RecentEmbeddingsUnavailable, "recent-embeddings window"),
    ],
)
def test_an_unreachable_redis_is_said_in_one_line_without_the_password(window, error, what):
    unreachable = window(UNREACHABLE, timeout_s=0.5)
    for call in (unreachable.read, lambda: unreachable.add(images(1))):
        with pytest.raises(error) as caught:
            call()
        reason = caught.value.reason
        assert reason.startswith(f"{what} unavailable: Redis at redis://***@127.0.0.1:1/0 failed: ")
        assert "hunter2" not in reason and "\n" not in reason


def test_only_redis_and_connection_errors_are_translated():
    with (
        pytest.raises(
            RecentImagesUnavailable, match="x unavailable: Redis at redis://h failed: gone"
        ),
        reaching_redis(RecentImagesUnavailable, "x", "redis://h"),
    ):
        raise ConnectionResetError("gone")
    not_an_outage = reaching_redis(RecentImagesUnavailable, "x", "redis://h")
    with pytest.raises(KeyError), not_an_outage:  # a bug stays a bug
        raise KeyError("post")


def test_the_password_and_the_query_are_masked():
    assert redact_url("redis://user:pw@h:6379/0?password=pw") == "redis://user:***@h:6379/0"
    assert redact_url("redis://:pw@h") == "redis://***@h"
    assert redact_url("redis://h:6379") == "redis://h:6379"
