"""`vlmod replay` speed: synthetic recorded posts for the example policies, decided again.

Each post gets a random value for every producer request the example policies read (scores,
bank hits, a caption, OCR text, link counts) and a text drawn from a few; its recorded verdicts
are the example policies' own decisions, so nothing changes and every rule runs. It prints
posts/s for the replay alone (records in memory: what `--history` gives once read) and for the
whole command's work from a JSONL file (reading, validating and grouping verdicts, then
replaying; and the reading alone). It asserts nothing.

    python bench/replay.py                   # 20,000 posts
    python bench/replay.py --posts 100000 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contracts.history import PostRecord, RecordedValue
from contracts.producers import request_key
from pipelines.producer_registry import producer_registry
from policies.loader import load_policy_dir
from policies.policy_set import PolicySet
from policies.scope import PostScope
from replay.history import RecordedPost, read_history
from replay.metrics import Labels
from replay.parallel import Job, replay_file
from replay.run import replay_posts
from review.report_io import RecordLimits

EXAMPLES = Path(__file__).resolve().parents[1] / "policies" / "examples"
TEXTS = (
    "Sunset at the beach",
    "selling my old bike, dm me",
    "you are all idiots",
    "free crypto, send 1 BTC get 2 back http://x.example",
    "",
)


def value_for(producer: str, request: object, rng: random.Random) -> object:
    """A plausible recorded value of `request`."""
    if producer == "banks":
        return rng.random() < 0.01
    if producer == "describe":
        return rng.choice(("a beach at sunset", "a man holding a knife", "a swastika flag"))
    if producer == "ocr":
        return rng.choice(("", "pay to 0x1234", "hello"))
    if producer == "links":
        count = rng.randint(0, 5)
        return {"count": count, "shortened": rng.randint(0, count), "domains": count}
    return rng.random() ** 3  # most scores low, a few high


def synthetic_posts(policies: PolicySet, count: int, seed: int = 7) -> list[RecordedPost]:
    """`count` recorded posts whose verdicts are `policies`' own decisions."""
    rng = random.Random(seed)
    asked = {(r.producer, r.request) for p in policies.policies for r in p.asks.values()}
    posts = []
    for number in range(count):
        post = {"id": f"p{number}", "text": rng.choice(TEXTS), "images": [], "meta": {}}
        values = {key: value_for(key[0], key[1], rng) for key in sorted(asked, key=repr)}
        record = PostRecord(
            post=post,
            values=[
                RecordedValue(producer=p, request=request_key(r), value=v)
                for (p, r), v in values.items()
            ],
        )
        scope = PostScope(post)
        recorded = RecordedPost(post["id"])
        for policy in policies.policies:
            decision = policy.evaluate(scope, policy.view(values))
            verdict = decision.to_verdict(post["id"])
            if not recorded.verdicts:
                verdict = verdict.model_copy(update={"record": record})
            recorded.add(verdict)
        posts.append(recorded)
    return posts


def main() -> None:
    """Time the replay and print posts/s."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best counts")
    parser.add_argument("--profile", action="store_true", help="profile the fast replay")
    parser.add_argument(
        "--workers", type=int, nargs="*", default=[2], help="also from JSONL over N processes"
    )
    args = parser.parse_args()
    policies = load_policy_dir(EXAMPLES, registry=producer_registry())
    posts = synthetic_posts(policies, args.posts)
    edited = [_edited(post, "community-standards") for post in posts]
    runs = {
        "one policy of four changed (the others' verdicts stand)": lambda: replay_posts(
            edited, policies
        ),
        "every policy decided again": lambda: replay_posts(posts, policies, decide_unchanged=True),
        "every policy decided again, through the policy engine": lambda: replay_posts(
            posts, policies, decide_unchanged=True, exact=True
        ),
    }
    for name, run in runs.items():
        best = min(_timed(run) for _ in range(args.repeats))
        print(f"{name}: {args.posts / best:,.0f} posts/s")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "history.jsonl"
        _write(path, edited)
        read = min(_timed(lambda: read_history(str(path), None).posts()) for _ in range(2))
        rate = args.posts / read
        print(f"reading the JSONL file alone (read, validate, group): {rate:,.0f} posts/s")
        whole = min(
            _timed(lambda: replay_posts(read_history(str(path), None).posts(), policies))
            for _ in range(args.repeats)
        )
        rate = args.posts / whole
        print(
            f"one policy changed, from JSONL (read, validate, group, replay): {rate:,.0f} posts/s"
        )
        for workers in args.workers:
            job = Job(str(path), policies, Labels(), RecordLimits(), (None, None), workers, False)
            whole = min(_timed(lambda job=job: replay_file(job)) for _ in range(args.repeats))
            print(
                f"one policy changed, from JSONL over {workers} processes (`--workers "
                f"{workers}`): {args.posts / whole:,.0f} posts/s"
            )
    print(f"({args.posts} posts, {len(policies.policies)} policies, best of {args.repeats})")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(replay_posts, posts, policies, decide_unchanged=True)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


def _edited(post: RecordedPost, policy_id: str) -> RecordedPost:
    """`post` as if `policy_id`'s file had since changed: its verdict names another sha256."""
    copy = RecordedPost(post.post_id, post.record, dict(post.verdicts), post.at)
    slot = (policy_id, False)
    old = copy.verdicts[slot]
    copy.verdicts[slot] = old.model_copy(
        update={"policy": old.policy.model_copy(update={"sha256": "0" * 64})}
    )
    return copy


def _timed(work: object) -> float:
    started = time.perf_counter()
    work()  # type: ignore[operator]
    return time.perf_counter() - started


def _write(path: Path, posts: list[RecordedPost]) -> None:
    with path.open("w") as file:
        for post in posts:
            for verdict in post.verdicts.values():
                file.write(verdict.model_dump_json() + "\n")


if __name__ == "__main__":
    main()
