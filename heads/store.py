"""Heads in Redis: every version kept, one active per head, promote and roll back atomically.

Keys (prefix `vlmod:head:`): `NAME:versions` (hash: version -> the head as JSON), `NAME:next`
(the last version given), `NAME:active` (the active version), `NAME:previous` (the versions
active before, newest last, for `rollback`), and `vlmod:heads` (the set of names). A head's
first version is active once saved; later ones wait for `promote`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from heads.exceptions import HeadError, HeadNotFound
from heads.model import Head

NAMES = "vlmod:heads"

_SAVE = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
if redis.call('SETNX', KEYS[2], ARGV[1]) == 1 then return 1 end
return 0
"""
_PROMOTE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return redis.error_reply('no version') end
local active = redis.call('GET', KEYS[2])
if active == ARGV[1] then return 0 end
if active then redis.call('RPUSH', KEYS[3], active) end
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""
_ROLLBACK = """
local previous = redis.call('RPOP', KEYS[3])
if not previous then return redis.error_reply('nothing to roll back to') end
redis.call('SET', KEYS[2], previous)
return previous
"""


@dataclass(frozen=True)
class HeadInfo:
    """One head as `vlmod heads list` shows it."""

    name: str
    active: int | None
    versions: tuple[int, ...]


def _keys(name: str) -> tuple[str, str, str, str]:
    base = f"vlmod:head:{name}"
    return f"{base}:versions", f"{base}:active", f"{base}:previous", f"{base}:next"


class HeadStore:
    """Versioned heads in one Redis, shared by the CLI, the consumers and the console."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._save = client.register_script(_SAVE)
        self._promote = client.register_script(_PROMOTE)
        self._rollback = client.register_script(_ROLLBACK)

    @classmethod
    def from_url(cls, url: str) -> HeadStore:
        """A store on the Redis at `url`."""
        import redis

        return cls(redis.Redis.from_url(url))

    def save(self, head: Head) -> Head:
        """Store `head` as the next version of its name; the first version becomes active."""
        versions, active, _, counter = _keys(head.name)
        number = int(self.client.incr(counter))
        saved = head.model_copy(update={"version": number})
        self._save(
            keys=[versions, active, NAMES], args=[number, saved.model_dump_json(), head.name]
        )
        return saved

    def get(self, name: str, version: int | None = None) -> Head:
        """Version `version` of `name`, or its active version."""
        versions, active, _, _ = _keys(name)
        if version is None:
            held = self.client.get(active)
            if held is None:
                raise HeadNotFound(f"no head named {name!r}; `vlmod heads list` shows them")
            version = int(held)
        body = self.client.hget(versions, version)
        if body is None:
            raise HeadNotFound(f"head {name!r} has no version {version}")
        return Head.model_validate_json(body)

    def active_version(self, name: str) -> int | None:
        """The active version of `name`, None when there is no such head."""
        held = self.client.get(_keys(name)[1])
        return None if held is None else int(held)

    def promote(self, name: str, version: int) -> bool:
        """Make `version` the active one (False: it was already); the old one can be rolled
        back to."""
        versions, active, previous, _ = _keys(name)
        try:
            return bool(self._promote(keys=[versions, active, previous], args=[version]))
        except Exception as error:  # redis.ResponseError from the script
            raise _store_error(name, version, error) from None

    def rollback(self, name: str) -> int:
        """Make the version active before the last promote active again; returns it."""
        versions, active, previous, _ = _keys(name)
        try:
            return int(self._rollback(keys=[versions, active, previous]))
        except Exception as error:
            raise _store_error(name, None, error) from None

    def heads(self) -> list[HeadInfo]:
        """Every head, by name, with its active version and all its versions."""
        infos = []
        for raw in sorted(self.client.smembers(NAMES)):
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            versions = sorted(int(v) for v in self.client.hkeys(_keys(name)[0]))
            infos.append(HeadInfo(name, self.active_version(name), tuple(versions)))
        return infos


def _store_error(name: str, version: int | None, error: Exception) -> HeadError:
    """What the script refused, said for the head."""
    message = str(error)
    if "no version" in message:
        return HeadNotFound(f"head {name!r} has no version {version}")
    if "nothing to roll back" in message:
        return HeadError(f"head {name!r} has no earlier active version to roll back to")
    return HeadError(f"head {name!r}: {message}")
