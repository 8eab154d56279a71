"""An answer and embedding cache in Redis that can never fail a post.

Keys hold the sha256 of the image bytes, a fingerprint of the model (name, revision, prompt
layout) and, for answers, a hash of the task text. A Redis outage is logged once, counted, and
then bypassed for `retry_after_s`, so it costs speed and nothing else. Redis is imported only
when a Redis-backed cache is built.

>>> cache = SignalCache.in_memory()
>>> cache.set_many({cache.key("m", "ab", "p", "Is it a cat?"): encode_probability(0.25)})
>>> decode_probability(cache.get_many([cache.key("m", "ab", "p", "Is it a cat?")])[0] or b"")
0.25
"""

from __future__ import annotations

import hashlib
import logging
import struct
import time
from array import array
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 7 * 24 * 3600


class _Store(Protocol):
    def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    def set_many(self, items: Mapping[str, bytes], ttl_s: int) -> None: ...


class SignalCache:
    """Embeddings, answers and captions keyed by image hash and model; misses on any failure."""

    def __init__(
        self,
        redis_url: str,
        ttl_s: int = DEFAULT_TTL_S,
        namespace: str = "vlmod",
        timeout_s: float = 0.25,
        retry_after_s: float = 5.0,
    ) -> None:
        self._init(_RedisStore(redis_url, timeout_s), ttl_s, namespace, retry_after_s)

    @classmethod
    def in_memory(cls, ttl_s: int = DEFAULT_TTL_S, namespace: str = "vlmod") -> SignalCache:
        """A process-local cache with the same behaviour, for benchmarks and tests."""
        cache = cls.__new__(cls)
        cache._init(_MemoryStore(), ttl_s, namespace, retry_after_s=0.0)
        return cache

    def _init(self, store: _Store, ttl_s: int, namespace: str, retry_after_s: float) -> None:
        self._store = store
        self.ttl_s = ttl_s
        self.namespace = namespace
        self.retry_after_s = retry_after_s
        self.errors = 0  # Redis calls that failed
        self._down_until = 0.0
        self._outage_logged = False

    def key(self, model_key: str, image_sha256: str, kind: str, text: str = "") -> str:
        """`namespace:model:image:kind[:text-hash]`; kind e=embedding, p=probability, d=caption."""
        suffix = f":{hashlib.sha256(text.encode()).hexdigest()[:32]}" if text else ""
        return f"{self.namespace}:{model_key}:{image_sha256}:{kind}{suffix}"

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The stored values, None for each miss; never raises."""
        if not keys:
            return []
        values: list[bytes | None] = [None] * len(keys)
        if self._available():
            try:
                values = self._store.get_many(keys)
                self._recovered()
            except Exception as exc:
                self._failed(exc)
        return values

    def set_many(self, items: Mapping[str, bytes]) -> None:
        """Store values with the TTL; never raises."""
        if not items or not self._available():
            return
        try:
            self._store.set_many(items, self.ttl_s)
            self._recovered()
        except Exception as exc:
            self._failed(exc)

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self._down_until = time.monotonic() + self.retry_after_s
        if not self._outage_logged:
            log.warning("signal cache unavailable, carrying on uncached: %s", exc)
            self._outage_logged = True

    def _recovered(self) -> None:
        if self._outage_logged:
            log.info("signal cache reachable again")
            self._outage_logged = False


class _RedisStore:
    def __init__(self, redis_url: str, timeout_s: float) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - redis is a core dependency
            raise ImportError("SignalCache needs the redis client: pip install 'redis>=8'") from exc
        self._client: Any = redis.Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return list(self._client.mget(list(keys)))

    def set_many(self, items: Mapping[str, bytes], ttl_s: int) -> None:
        pipeline = self._client.pipeline(transaction=False)
        for key, value in items.items():
            pipeline.set(key, value, ex=ttl_s)
        pipeline.execute()


class _MemoryStore:
    def __init__(self) -> None:
        self._values: dict[str, tuple[float, bytes]] = {}

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        now = time.monotonic()
        entries = [self._values.get(key) for key in keys]
        return [entry[1] if entry and entry[0] > now else None for entry in entries]

    def set_many(self, items: Mapping[str, bytes], ttl_s: int) -> None:
        expires = time.monotonic() + ttl_s
        self._values.update({key: (expires, value) for key, value in items.items()})


def encode_probability(value: float) -> bytes:
    """Eight bytes, little-endian float64."""
    return struct.pack("<d", value)


def decode_probability(raw: bytes) -> float:
    """The inverse of `encode_probability`."""
    return float(struct.unpack("<d", raw)[0])


def encode_embedding(values: Sequence[float]) -> bytes:
    """Packed float32, native little-endian order."""
    return array("f", values).tobytes()


def decode_embedding(raw: bytes) -> list[float]:
    """The inverse of `encode_embedding`."""
    packed = array("f")
    packed.frombytes(raw)
    return packed.tolist()
