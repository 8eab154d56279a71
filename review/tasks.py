"""Review tasks in Redis: queues ordered by priority then age, and leases that one reviewer holds.

Every change is one Lua script, so two reviewers can never hold one task and a decision is
recorded at most once. Time comes from the injected clock and is passed into each script: tests
move leases past their expiry by moving the clock, never by sleeping, and Redis' TIME is unused.

Keys, all under the hash tag `{namespace}` so that every script touches one slot (Redis Cluster):

    tasks             HASH  task key -> ReviewTask JSON (open, claimed and decided)
    place             HASH  task key -> "priority|enqueued-ms|queue", the task's fixed place
    decided           HASH  task key -> "decided-at|reviewer"
    holder            HASH  task key -> reviewer, while leased
    queues            SET   every queue name ever added to
    open-p:<queue>    ZSET  waiting tasks: score priority, member "<enqueued-ms, 15 digits>:<key>"
    open-a:<queue>    ZSET  waiting tasks: score enqueued-ms, member key
    age:<queue>       ZSET  waiting and leased tasks: score enqueued-ms, member key
    leases:<queue>    ZSET  leased tasks: score lease expiry (epoch s), member key
    held:<queue>      HASH  reviewer -> the task key they hold in this queue
    outbox            HASH  task key -> what its decision publishes, until the broker acks it
    meta              HASH  task key -> TaskMeta JSON, for the tasks the console made itself
    exclude           HASH  task key -> "|a|b|": reviewers who may not claim it (they decided it)
    final             HASH  verdict key -> FinalDecision JSON: the decision that stands on it
    golden-seen:<queue>:<reviewer>  SET  the golden tasks served to the reviewer

Ordering is exact with no bound on priority: equal priorities fall back to the member's
zero-padded enqueued milliseconds (lexical order), so ties sort by age. Enqueued times before
1970 sort as 1970; 15 digits of milliseconds last until the year 33658. Both orders are kept
as indexes, so stores built with `order="priority"` and `order="age"` can share a namespace.

Deciding is one script: the first request to decide a task marks it decided and leaves what
its decision will publish in the outbox; a second request finds it decided and publishes nothing.
The console publishes the outbox entry and only then removes it, so a crash in between leaves
a decided task whose decision is published again at the next start (`unpublished`). The same
script records a final decision (`final`, which appeals read) and adds the task a decision
leads to (a second review, an adjudication), so neither can happen without the other.

Retention: nothing expires. A decided task keeps its JSON, its place and its decision, so a late
duplicate from the review topic is refused by `add` and a second decision by `decide`; that is
the task JSON plus about 150 bytes per task, to be trimmed by an operator if ever needed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from contracts import services
from contracts.errors import ModerationError, Stage
from contracts.review import ReviewTask
from review.task_meta import FinalDecision, TaskMeta
from review.task_scripts import PRELUDE, SCRIPTS

ORDERS = ("priority", "age")
MS_DIGITS = 15


class ReviewError(ModerationError):
    """Base of the review store's errors."""

    # Review is where routed posts land; failures here belong to the route stage.
    stage = Stage.ROUTE


class LeaseLost(ReviewError):
    """The reviewer does not hold the task (expired, taken by someone else, decided, unknown)."""


class AlreadyDecided(ReviewError):
    """The task was decided before, by this reviewer or another one."""


class ReviewStoreUnavailable(ReviewError):
    """Redis could not be reached or failed; the reason names the URL, password masked."""


@dataclass(frozen=True)
class Claim:
    """A task held by one reviewer until `expires_at` (epoch seconds), with its meta if any."""

    task: ReviewTask
    reviewer: str
    expires_at: float
    meta: TaskMeta | None = None


@dataclass(frozen=True)
class FollowUp:
    """A task a decision adds, atomically with it, and who may not claim it."""

    task: ReviewTask
    meta: TaskMeta
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class QueueStats:
    """One queue's waiting and leased counts, and the age of its oldest undecided task."""

    open: int  # waiting, not claimed (an expired lease counts as waiting)
    claimed: int  # under a live lease
    oldest_age_s: float | None  # age of the oldest open-or-claimed task, by enqueued_at


_LOST_REASONS = {
    "decided": "was decided already",
    "other": "is claimed by another reviewer",
    "expired": "was held by {reviewer} but the lease expired",
    "open": "is waiting in its queue, not claimed by {reviewer}",
    "unknown": "is not a known task",
    "excluded": "is a review {reviewer} may not take (they decided the post before)",
}


class TaskStore:
    """Review queues in Redis: add tasks, claim them under a lease, renew, release, decide."""

    def __init__(
        self,
        redis_url: str,
        *,
        namespace: str = "vlmod:review",
        lease_s: float = 300.0,
        order: str = "priority",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, not {order!r}")
        if lease_s <= 0:
            raise ValueError(f"lease_s must be positive, not {lease_s}")
        self.url, self.namespace, self.lease_s, self.order = redis_url, namespace, lease_s, order
        self._clock = clock
        self._client = redis_client(redis_url)
        self._scripts = {
            name: self._client.register_script(PRELUDE + body) for name, body in SCRIPTS.items()
        }

    def now(self) -> float:
        """The store's clock: epoch seconds."""
        return self._clock()

    def add(
        self, task: ReviewTask, *, meta: TaskMeta | None = None, exclude: Sequence[str] = ()
    ) -> bool:
        """Queue a task; False when its key is known already (open, claimed or decided).

        `meta` says what the console made it for; reviewers in `exclude` may never claim it.
        """
        return bool(self._run("add", task.queue, add_args(task, meta, exclude)))

    def claim(self, queue: str, reviewer: str) -> Claim | None:
        """The reviewer's live claim in `queue`, else the next waiting task, leased to them."""
        now = self._clock()
        args = [repr(now), repr(now + self.lease_s), reviewer, self.order]
        return _claim_of(self._run("claim", queue, args), reviewer)

    def claim_key(self, key: str, reviewer: str) -> None:
        """Lease waiting task `key` to `reviewer` beside what they hold; `LeaseLost` says why
        not (another reviewer holds it, it was decided, they may not take it)."""
        now = self._clock()
        args = [key, repr(now), repr(now + self.lease_s), reviewer]
        _raise_unless_ok(self._run_on_key("claim_key", key, args), key, reviewer)

    def states(self, keys: Sequence[str]) -> dict[str, str]:
        """Each task's state: open, claimed, decided, or unknown (never queued here)."""
        with self._reaching():
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.hexists(self._key("decided"), key)
                pipe.hexists(self._key("holder"), key)
                pipe.hexists(self._key("place"), key)
            rows = pipe.execute()
        return {key: _state(*rows[3 * i : 3 * i + 3]) for i, key in enumerate(keys)}

    def claimed_by(self, reviewer: str, queue: str) -> Claim | None:
        """The reviewer's live claim in `queue`, if any; changes nothing."""
        return _claim_of(self._run("peek", queue, [reviewer, repr(self._clock())]), reviewer)

    def serve_golden(
        self, reviewer: str, copy: ReviewTask, meta: TaskMeta, golden_id: str
    ) -> Claim | None:
        """Lease `copy` of golden task `golden_id` to `reviewer` in its queue, unless they hold a
        claim there (returned instead), had that golden task before, or no real task waits."""
        now, queue = self._clock(), copy.queue
        args = [repr(now), repr(now + self.lease_s), reviewer, *add_args(copy, meta, ())]
        keys = [*self.keys_of(queue), self._key(f"golden-seen:{queue}:{reviewer}")]
        with self._reaching():
            row = self._scripts["serve_golden"](keys=keys, args=[*args, golden_id])
        return _claim_of(row, reviewer)

    def golden_seen(self, queue: str, reviewer: str) -> set[str]:
        """The golden tasks of `queue` served to `reviewer` so far."""
        with self._reaching():
            return set(self._client.smembers(self._key(f"golden-seen:{queue}:{reviewer}")))

    def head_enqueued_ms(self, queue: str) -> int | None:
        """When the oldest waiting task of `queue` was queued (epoch ms), or None."""
        with self._reaching():
            head = self._client.zrange(self._key(f"open-a:{queue}"), 0, 0, withscores=True)
        return int(head[0][1]) if head else None

    def renew(self, key: str, reviewer: str) -> Claim:
        """Extend the reviewer's lease to now + lease_s; `LeaseLost` when they do not hold it."""
        now = self._clock()
        args = [key, reviewer, repr(now), repr(now + self.lease_s)]
        result = self._run_on_key("renew", key, args)
        _raise_unless_ok(result, key, reviewer)
        claim = _claim_of(result, reviewer)
        assert claim is not None  # an 'ok' result always carries the task
        return claim

    def release(self, key: str, reviewer: str) -> None:
        """Skip: the task goes back to its queue at its old place; `LeaseLost` if not held."""
        result = self._run_on_key("release", key, [key, reviewer, repr(self._clock())])
        _raise_unless_ok(result, key, reviewer)

    def decide(
        self,
        key: str,
        reviewer: str,
        outbox: str = "",
        *,
        final: FinalDecision | None = None,
        follow: FollowUp | None = None,
    ) -> ReviewTask:
        """Mark a task held under a live lease decided and drop it from its queue, atomically.

        `outbox` is what the decision publishes; it waits in the outbox until `published`.
        `final` becomes the decision standing on its verdict key; `follow` is queued.
        Only one call per task gets here: every other raises AlreadyDecided or LeaseLost.
        """
        args = [key, reviewer, repr(self._clock()), outbox]
        args += [final.decision.key, final.model_dump_json()] if final else ["", ""]
        args += add_args(follow.task, follow.meta, follow.exclude) if follow else [""] * 7
        target = follow.task.queue if follow else None
        result = self._run_on_key("decide", key, args, target)
        if result and result[0] == "decided":
            at, _, by = str(result[1]).partition("|")
            raise AlreadyDecided(f"task {key} was decided already, by {by} at {at} (epoch s)")
        _raise_unless_ok(result, key, reviewer)
        return ReviewTask.model_validate_json(result[1])

    def unpublished(self) -> dict[str, str]:
        """Task key -> the outbox entry of each decided task whose decision awaits its ack."""
        with self._reaching():
            return dict(self._client.hgetall(self._key("outbox")))

    def published(self, key: str) -> None:
        """The decision of task `key` is acknowledged by the broker: drop its outbox entry."""
        with self._reaching():
            self._client.hdel(self._key("outbox"), key)

    def get(self, key: str) -> ReviewTask | None:
        """The task with this key, whatever its state, or None."""
        with self._reaching():
            raw = self._client.hget(self._key("tasks"), key)
        return None if raw is None else ReviewTask.model_validate_json(raw)

    def meta(self, key: str) -> TaskMeta | None:
        """What the console made task `key` for, or None for a task from a review topic."""
        with self._reaching():
            raw = self._client.hget(self._key("meta"), key)
        return None if raw is None else TaskMeta.model_validate_json(raw)

    def final(self, verdict_key: str) -> FinalDecision | None:
        """The final decision standing on `verdict_key`, if one was made here."""
        with self._reaching():
            raw = self._client.hget(self._key("final"), verdict_key)
        return None if raw is None else FinalDecision.model_validate_json(raw)

    def queues(self) -> list[str]:
        """Every queue a task was ever added to, sorted."""
        with self._reaching():
            return sorted(self._client.smembers(self._key("queues")))

    def stats(self) -> dict[str, QueueStats]:
        """Waiting and leased counts and the oldest undecided task's age, per queue."""
        queues, now = self.queues(), self._clock()
        with self._reaching():
            pipe = self._client.pipeline(transaction=True)
            for queue in queues:
                pipe.zcard(self._key(f"open-a:{queue}"))
                pipe.zcount(self._key(f"leases:{queue}"), "-inf", repr(now))
                pipe.zcount(self._key(f"leases:{queue}"), f"({now!r}", "+inf")
                pipe.zrange(self._key(f"age:{queue}"), 0, 0, withscores=True)
            rows = pipe.execute()
        return {q: _stats_of(rows[4 * i : 4 * i + 4], now) for i, q in enumerate(queues)}

    def _run(self, script: str, queue: str, args: list[Any], target: str | None = None) -> Any:
        with self._reaching():
            return self._scripts[script](keys=self.keys_of(queue, target), args=args)

    def _run_on_key(self, script: str, key: str, args: list[Any], target: str | None = None) -> Any:
        # A task never changes queue, so its queue is read first to name the script's keys.
        with self._reaching():
            place = self._client.hget(self._key("place"), key)
        if place is None:
            raise LeaseLost(f"task {key} {_LOST_REASONS['unknown']}")
        return self._run(script, place.split("|", 2)[2], args, target)

    def keys_of(self, queue: str, target: str | None = None) -> list[str]:
        """The KEYS every script takes: shared hashes, `queue`'s indexes, `target`'s indexes."""
        shared = [self._key(name) for name in ("tasks", "place", "decided", "holder")]
        per_queue = [self._key(f"{kind}:{queue}") for kind in ("open-p", "open-a", "age")]
        rest = [self._key(f"leases:{queue}"), self._key(f"held:{queue}"), self._key("queues")]
        qa = [self._key(name) for name in ("outbox", "meta", "exclude", "final")]
        other = target or queue
        follow = [self._key(f"{kind}:{other}") for kind in ("open-p", "open-a", "age")]
        return [*shared, *per_queue, *rest, *qa, *follow]

    def _key(self, name: str) -> str:
        return f"{{{self.namespace}}}:{name}"

    def _reaching(self) -> contextlib.AbstractContextManager[None]:
        return reaching_redis("review tasks", self.url)


def reaching_redis(what: str, url: str) -> contextlib.AbstractContextManager[None]:
    """Redis failures as ReviewStoreUnavailable naming `what` and the URL, password masked, so
    pages answer 503 with the reason."""
    return services.reaching_redis(ReviewStoreUnavailable, what, url)


def enqueued_ms(task: ReviewTask) -> int:
    """The task's enqueued time in epoch milliseconds, clamped to what the index can order."""
    ms = int(task.enqueued_at.timestamp() * 1000)
    return min(max(ms, 0), 10**MS_DIGITS - 1)


def place_value(task: ReviewTask) -> str:
    """The stored `priority|enqueued-ms|queue`: where the task goes back to when released."""
    return f"{task.priority}|{enqueued_ms(task):0{MS_DIGITS}d}|{task.queue}"


def add_args(task: ReviewTask, meta: TaskMeta | None, exclude: Sequence[str]) -> list[Any]:
    """The add_task arguments of the scripts: key, JSON, place, ms, queue, meta, exclusions."""
    excluded = f"|{'|'.join(exclude)}|" if exclude else ""
    place, ms = place_value(task), enqueued_ms(task)
    meta_json = meta.model_dump_json() if meta else ""
    return [task.key, task.model_dump_json(), place, ms, task.queue, meta_json, excluded]


def _claim_of(row: list[Any] | None, reviewer: str) -> Claim | None:
    """A claim from a script's row (key or status, expiry, task JSON, meta JSON or '')."""
    if not row:
        return None
    meta = TaskMeta.model_validate_json(row[3]) if row[3] else None
    return Claim(ReviewTask.model_validate_json(row[2]), reviewer, float(row[1]), meta)


def _raise_unless_ok(result: list[Any], key: str, reviewer: str) -> None:
    if result[0] != "ok":
        reason = _LOST_REASONS.get(str(result[1]), str(result[1])).format(reviewer=reviewer)
        raise LeaseLost(f"task {key} {reason}")


def _state(decided: bool, held: bool, placed: bool) -> str:
    if decided:
        return "decided"
    # A lease past its expiry still counts as claimed until a claim reopens the task.
    return "claimed" if held else "open" if placed else "unknown"


def _stats_of(row: list[Any], now: float) -> QueueStats:
    waiting, expired, live, oldest = row
    age = now - oldest[0][1] / 1000 if oldest else None
    return QueueStats(open=int(waiting) + int(expired), claimed=int(live), oldest_age_s=age)


def redis_client(redis_url: str) -> Any:
    """A Redis client that gives up within about a second instead of retrying for ten."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    # redis-py's default retries ten times with up to a second between tries; a console whose
    # Redis is down should say so in well under a second instead.
    return redis.Redis.from_url(
        redis_url,
        decode_responses=True,
        socket_timeout=5.0,
        socket_connect_timeout=2.0,
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 2),
    )
