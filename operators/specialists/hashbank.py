"""Hash banks: named sets of known PDQ hashes in Redis, and a fast in-memory matcher over them.

A bank (say `known-scam-qr`) is a set of PDQ hashes with its own match threshold. `BankStore`
keeps the banks in Redis so every consumer shares them. `BankMatcher` keeps one `HashIndex` per
bank in memory and reads one counter, `BankStore.version()`, at most every `refresh_s`: a bank
edited elsewhere reaches running consumers without a restart, and only changed banks reload.

A bank Redis does not hold is an error, `BankMissing`, never a quiet "no match": a policy naming
`known-bda` for `known-bad` must not pass banked images. A bank added later is found at the next
check. A bank emptied of its hashes still exists (it matches nothing) until `BankStore.remove`
is called without hashes, as `vlmod bank remove BANK` does.

`HashIndex` (`operators.specialists.hashindex`) finds the closest hash within a Hamming
threshold without scanning the bank. Redis is imported only when a `BankStore` is built.
"""

from __future__ import annotations

import difflib
import json
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contracts.errors import Stage
from contracts.services import reaching_redis
from operators.exceptions import OperatorError
from operators.specialists.bank_names import check_bank_name
from operators.specialists.hashindex import HashIndex, check_threshold
from operators.specialists.pdq import MATCH_THRESHOLD, MIN_QUALITY, PdqHash


class BanksUnavailable(OperatorError):
    """The banks' Redis could not be reached or failed; the next call tries again."""

    # Matching a post against banks is signal work, like a model call: a failure there is an
    # infer-stage failure that the pipeline retries, not a problem with the image itself.
    stage = Stage.INFER  # as OperatorError's, stated because the choice matters


class BankMissing(OperatorError):
    """No bank of that name in Redis: a policy names a bank nobody added (a typo?)."""

    def __init__(self, bank: str, held: Sequence[str] = ()) -> None:
        close = difflib.get_close_matches(bank, held, n=1)
        super().__init__(f"no bank named {bank}" + (f"; did you mean {close[0]}?" if close else ""))
        self.bank = bank


class BankCorrupt(OperatorError):
    """A value in the banks' Redis keys is not what `BankStore` writes (edited by hand?)."""


@dataclass(frozen=True)
class BankEntry:
    """One banked hash: 64 hex digits, its PDQ quality, the file it came from, when (ISO UTC)."""

    hash: str
    quality: int
    source: str
    added_at: str

    def __post_init__(self) -> None:
        # Validates and lower-cases, so one picture is one field in Redis whatever the input.
        object.__setattr__(self, "hash", PdqHash.from_hex(self.hash, self.quality).hex)

    @classmethod
    def of(cls, pdq: PdqHash, source: str, added_at: str | None = None) -> BankEntry:
        """An entry for a freshly computed hash, stamped now unless `added_at` is given."""
        return cls(pdq.hex, pdq.quality, source, added_at or _now())

    def to_json(self) -> str:
        """The stored value; the hash itself is the Redis field name."""
        return json.dumps({"quality": self.quality, "source": self.source, "at": self.added_at})

    @classmethod
    def from_json(cls, hash_hex: str, raw: str) -> BankEntry:
        """The inverse of `to_json`; `BankCorrupt` when the value was not written by us."""
        try:
            fields = json.loads(raw)
            return cls(hash_hex, int(fields["quality"]), str(fields["source"]), fields["at"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BankCorrupt(f"bank entry {hash_hex[:80]!r} is unreadable: {exc}") from exc


@dataclass(frozen=True)
class BankInfo:
    """A bank's size, match threshold, last change (ISO UTC) and the version of that change."""

    count: int
    threshold: int
    updated_at: str
    revision: int


@dataclass(frozen=True)
class BankMatch:
    """The closest banked hash: its distance, hex, which query `image` matched, its `source`."""

    distance: int
    hash: str
    image: int
    source: str


class BankStore:
    """Banks persisted in Redis; every change bumps one version counter in the same MULTI.

    Layout under the namespace: `{ns}:bank:{name}` hash (field: hash hex, value: entry JSON),
    `{ns}:banks` hash (name: threshold, updated_at, revision) and the `{ns}:banks:version`
    counter. Every Redis failure raises `BanksUnavailable`.
    """

    def __init__(self, redis_url: str, *, namespace: str = "vlmod", timeout_s: float = 2.0) -> None:
        self.url = redis_url
        self.namespace = namespace
        self._client = _redis_client(redis_url, timeout_s)
        self._banks_key = f"{namespace}:banks"
        self._version_key = f"{namespace}:banks:version"

    def add(self, bank: str, entries: Sequence[BankEntry], *, threshold: int | None = None) -> int:
        """Add entries (a known hash keeps its first entry), creating the bank; how many are new."""
        return len(self.add_new(bank, entries, threshold=threshold))

    def add_new(
        self, bank: str, entries: Sequence[BankEntry], *, threshold: int | None = None
    ) -> list[str]:
        """As `add`, returning the hashes the bank did not hold before, in the order given."""
        check_bank_name(bank)
        if threshold is not None:
            check_threshold(threshold)
        _refuse_low_quality(entries)

        def queue(pipe: Any, old: BankInfo | None, revision: int) -> bool:
            for entry in entries:
                pipe.hsetnx(self._bank_key(bank), entry.hash, entry.to_json())
            kept = old.threshold if old else MATCH_THRESHOLD
            self._queue_info(pipe, bank, kept if threshold is None else threshold, revision)
            return True

        set_new = self._write(bank, queue)[: len(entries)]
        return list(dict.fromkeys(e.hash for e, new in zip(entries, set_new, strict=True) if new))

    def remove(self, bank: str, hashes: Sequence[str] = ()) -> int:
        """Remove these hashes, or the whole bank when none are given; how many entries went."""
        check_bank_name(bank)
        fields = [PdqHash.from_hex(text).hex for text in hashes]

        def queue(pipe: Any, old: BankInfo | None, revision: int) -> bool:
            if old is None:
                return False
            if not fields:
                pipe.hlen(self._bank_key(bank))
                pipe.delete(self._bank_key(bank))
                pipe.hdel(self._banks_key, bank)
            else:
                pipe.hdel(self._bank_key(bank), *fields)
                self._queue_info(pipe, bank, old.threshold, revision)
            return True

        results = self._write(bank, queue)
        return int(results[0]) if results else 0

    def banks(self) -> dict[str, BankInfo]:
        """Every bank by name, with its entry count and threshold."""
        with self._reaching():
            raw = self._client.hgetall(self._banks_key)
            names = sorted(raw)
            pipe = self._client.pipeline(transaction=True)
            for name in names:
                pipe.hlen(self._bank_key(name))
            counts = pipe.execute()
        return {name: _info(name, raw[name], n) for name, n in zip(names, counts, strict=True)}

    def entries(self, bank: str) -> list[BankEntry]:
        """The bank's entries, oldest first; an unknown bank has none."""
        snapshot = self.snapshot(bank)
        return list(snapshot[1]) if snapshot else []

    def snapshot(self, bank: str) -> tuple[BankInfo, list[BankEntry]] | None:
        """The bank's info and entries read in one transaction, or None if there is no such bank."""
        check_bank_name(bank)
        with self._reaching():
            pipe = self._client.pipeline(transaction=True)
            pipe.hget(self._banks_key, bank)
            pipe.hgetall(self._bank_key(bank))
            raw_info, raw_entries = pipe.execute()
        if raw_info is None:
            return None
        entries = [BankEntry.from_json(field, value) for field, value in raw_entries.items()]
        entries.sort(key=lambda entry: (entry.added_at, entry.hash))
        return _info(bank, raw_info, len(entries)), entries

    def version(self) -> int:
        """The change counter: it moves on every add or remove, so readers know to reload."""
        with self._reaching():
            return int(self._client.get(self._version_key) or 0)

    def _write(self, bank: str, queue: Callable[[Any, BankInfo | None, int], bool]) -> list[Any]:
        """Run `queue` in one MULTI with the version INCR, retried while others write."""

        def transaction(pipe: Any) -> None:
            raw = pipe.hget(self._banks_key, bank)
            # Watching the version makes this INCR land exactly on `revision`.
            revision = int(pipe.get(self._version_key) or 0) + 1
            old = _info(bank, raw, 0) if raw is not None else None
            pipe.multi()
            if queue(pipe, old, revision):
                pipe.incr(self._version_key)

        with self._reaching():
            return list(self._client.transaction(transaction, self._banks_key, self._version_key))

    def _queue_info(self, pipe: Any, bank: str, threshold: int, revision: int) -> None:
        info = {"threshold": threshold, "updated_at": _now(), "revision": revision}
        pipe.hset(self._banks_key, bank, json.dumps(info))

    def _bank_key(self, bank: str) -> str:
        return f"{self.namespace}:bank:{bank}"

    def _reaching(self) -> AbstractContextManager[None]:
        return reaching_redis(BanksUnavailable, "hash banks", self.url)


@dataclass(frozen=True)
class _LoadedBank:
    revision: int
    threshold: int
    index: HashIndex
    entries: list[BankEntry]


class BankMatcher:
    """Matches image hashes against the banks in a `BankStore`, reloading changed banks."""

    def __init__(
        self,
        store: BankStore,
        *,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._banks: dict[str, _LoadedBank] = {}
        self._version: int | None = None
        self._checked_at: float | None = None
        self._failure: BanksUnavailable | None = None

    def match(self, bank: str, hashes: Sequence[bytes]) -> BankMatch | None:
        """The entry closest to any of `hashes` within the bank's threshold; None if none.

        A bank Redis does not hold raises `BankMissing`; an empty one (every hash removed, the
        bank kept) exists and matches nothing. Callers drop hashes under MIN_QUALITY first.
        """
        banks = self._current()
        loaded = banks.get(bank)
        if loaded is None:
            raise BankMissing(bank, sorted(banks))
        if not hashes:
            return None
        hits = loaded.index.nearest(hashes, loaded.threshold)
        found = [(hit[1], image, hit[0]) for image, hit in enumerate(hits) if hit is not None]
        if not found:
            return None
        distance, image, position = min(found)
        entry = loaded.entries[position]
        return BankMatch(distance=distance, hash=entry.hash, image=image, source=entry.source)

    def check_now(self) -> None:
        """Read the banks' version now (and reload what changed), not up to `refresh_s` later.

        For a post decided again because a bank changed: the change must be seen by its match.
        """
        with self._lock:
            self._check()

    def _current(self) -> dict[str, _LoadedBank]:
        """The loaded banks, after a version check (one thread at a time) when one is due."""
        # Until banks are loaded every caller waits for them; after that, callers arriving during
        # a reload (seconds for a million hashes) keep matching against the banks already held.
        if self._due() and self._lock.acquire(blocking=self._version is None):
            try:
                if self._due():
                    self._check()
            finally:
                self._lock.release()
        failure = self._failure
        if failure is not None:
            raise BanksUnavailable(failure.reason) from failure
        return self._banks

    def _due(self) -> bool:
        return self._checked_at is None or self._clock() - self._checked_at >= self.refresh_s

    def _check(self) -> None:
        now = self._clock()
        try:
            self._reload_if_changed()
        except BanksUnavailable as exc:
            # Restarted without persistence, Redis counts versions from 0 again and could reach
            # the numbers held here: forgetting the version makes the next load a full one.
            self._failure, self._version = exc, None
            return
        # Only after a successful check: while Redis is down every call tries again.
        self._failure, self._checked_at = None, now

    def _reload_if_changed(self) -> None:
        # The version is read before the banks, so a change racing this load moves the version
        # past the one recorded here and is picked up at the next check.
        version = self.store.version()
        if version == self._version:
            return
        held = self._banks if self._version is not None else {}
        banks: dict[str, _LoadedBank] = {}
        for name, info in self.store.banks().items():
            kept = held.get(name)
            loaded = kept if kept and kept.revision == info.revision else self._load(name)
            if loaded is not None:
                banks[name] = loaded
        self._banks, self._version = banks, version

    def _load(self, bank: str) -> _LoadedBank | None:
        snapshot = self.store.snapshot(bank)
        if snapshot is None:  # removed since the listing
            return None
        info, entries = snapshot
        index = HashIndex([bytes.fromhex(e.hash) for e in entries], max_threshold=info.threshold)
        return _LoadedBank(info.revision, info.threshold, index, entries)


def _refuse_low_quality(entries: Sequence[BankEntry]) -> None:
    # A featureless picture (flat colour) hashes alike across unrelated images: banking one
    # would flag every flat image posted.
    weak = [f"{e.source} (quality {e.quality})" for e in entries if e.quality < MIN_QUALITY]
    if weak:
        raise ValueError(
            f"{len(weak)} hash(es) below PDQ quality {MIN_QUALITY} would match "
            f"unrelated images and are refused: {', '.join(weak[:5])}"
        )


def _info(bank: str, raw: str, count: int) -> BankInfo:
    try:
        fields = json.loads(raw)
        return BankInfo(count, int(fields["threshold"]), fields["updated_at"], fields["revision"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BankCorrupt(f"the info of bank {bank!r} is unreadable: {exc}") from exc


def _redis_client(redis_url: str, timeout_s: float) -> Any:
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - redis is a core dependency
        raise ImportError("hash banks need the redis client: pip install 'redis>=8'") from exc
    timeouts = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    return redis.Redis.from_url(redis_url, decode_responses=True, **timeouts)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
