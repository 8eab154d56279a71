"""A small history whose changed posts fall in three known transitions, for replay-QA tests.

The recorded policy reviews a weapon score over 0.8 and blocks over 0.95. The candidate keeps
the same id and version (authors often do) and reviews over 0.5, blocks over 0.9, and blocks
text offering something for sale. Counted from the scores by hand:

    allow->block   2 posts (w-sale-*: score 0.1, "knife for sale")
    allow->review 12 posts (w-low-*: 0.55 up to 0.77)
    review->block  3 posts (w-high-*: 0.91, 0.92, 0.93)

and 8 unchanged posts (allow, review and block alike under both).
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

from contracts.records import Verdict
from policies.compiled import CompiledPolicy
from policies.loader import load_policy_dir
from policies.policy_set import PolicySet
from replay.history import RecordedPost, group_posts
from tests.unit.replay.builders import START, compile_text, decided, record_of

RECORDED = """\
id: weapons
version: 3
mode: active
signals:
  labels:
    weapon: "a weapon such as a gun or a knife"
rules:
  - {id: weapon-display, when: labels.weapon > 0.8, action: review, queue: weapons}
  - {id: weapon-block, when: labels.weapon > 0.95, action: block, queue: weapons}
default: allow
"""
CANDIDATE = """\
id: weapons
version: 3
mode: active
signals:
  labels:
    weapon: "a weapon such as a gun or a knife"
rules:
  - id: weapon-display
    when: labels.weapon > 0.5
    action: review
    queue: weapons
    reason: a weapon may be shown
  - {id: weapon-block, when: labels.weapon > 0.9, action: block, queue: weapons}
  - id: sale
    when: text.contains("for sale")
    action: block
    queue: weapons
    reason: offers a weapon for sale
default: allow
"""
POSTS = (
    [(f"w-sale-{n}", 0.1, "knife for sale") for n in range(2)]
    + [(f"w-low-{n}", 0.55 + n * 0.02, "") for n in range(12)]
    + [(f"w-high-{n}", 0.91 + n * 0.01, "") for n in range(3)]
    + [(f"w-same-{n}", score, "") for n, score in enumerate([0.2] * 4 + [0.85] * 2 + [0.99] * 2)]
)
TRANSITIONS = {"w-sale": "allow->block", "w-low": "allow->review", "w-high": "review->block"}


def transition_of(post_id: str) -> str | None:
    """The hand-counted transition of a post of POSTS, None when unchanged."""
    return TRANSITIONS.get(post_id.rsplit("-", 1)[0])


def recorded_policy(folder: Path) -> CompiledPolicy:
    """The policy that decided the history."""
    return compile_text(folder / "recorded", "weapons.yaml", RECORDED)


def candidates(folder: Path, text: str = CANDIDATE) -> tuple[Path, PolicySet]:
    """The candidate directory and its policies."""
    directory = folder / "candidates"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "weapons.yaml").write_text(text)
    from pipelines.producer_registry import producer_registry

    policies = load_policy_dir(directory, require_active=False, registry=producer_registry())
    return directory, policies


def history(folder: Path) -> list[Verdict]:
    """The recorded verdicts of POSTS, each carrying its record."""
    policy = recorded_policy(folder)
    verdicts = []
    for n, (post_id, score, text) in enumerate(POSTS):
        record = record_of(policy, {"id": post_id, "text": text}, {"labels.weapon": score})
        verdicts.append(decided(policy, record, at=START + timedelta(seconds=n)))
    return verdicts


def posts(folder: Path) -> list[RecordedPost]:
    """The history grouped by post."""
    return group_posts(history(folder))


def reference_key(post_id: str, policy_id: str, sha256: str) -> str:
    """A replay-QA task's key, spelled out: sha256 of the JSON list, 32 hex digits."""
    material = json.dumps([post_id, policy_id, f"sha256:{sha256}"], separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()[:32]
