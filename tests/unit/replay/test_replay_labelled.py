"""Labelled posts for heads from decisions and history: the label that counts, the post rebuilt
from its record with its image URLs, and what cannot be learnt from counted with why."""

from __future__ import annotations

from contracts.records import Action
from contracts.review import DecisionKind
from replay.history import group_posts
from replay.labelled import INLINE, NO_RECORD, labelled_posts
from replay.metrics import labels_from
from tests.unit.replay.builders import compile_text, decided, record_of, review

POLICY = """
id: words
version: 1
rules:
  - {id: pills, when: 'text.contains("pills")', action: review, queue: spam}
default: allow
"""
SHADOW = POLICY.replace("id: words", "id: words-next").replace(
    "version: 1", "version: 1\nmode: shadow"
)


def test_labels_come_from_the_decision_that_counts_and_posts_from_their_records(tmp_path):
    policy = compile_text(tmp_path, "words.yaml", POLICY)
    image = {"url": "https://cdn.example/a.png", "mime": None}
    spam = decided(policy, record_of(policy, {"id": "s", "text": "pills", "images": [image]}, {}))
    ham = decided(policy, record_of(policy, {"id": "h", "text": "hello", "images": []}, {}))
    inline = {"id": "i", "text": "pills", "images": [{"url": None, "mime": "image/png"}]}
    dropped = decided(policy, record_of(policy, inline, {}))
    bare = decided(policy, record_of(policy, {"id": "b", "text": "pills"}, {}), with_record=False)
    unseen = decided(policy, record_of(policy, {"id": "u", "text": "hello"}, {}))
    escalated = review(spam, Action.BLOCK).model_copy(
        update={"key": unseen.key, "post_id": "u", "decision": DecisionKind.ESCALATE}
    )
    decisions = [
        review(spam, Action.BLOCK),
        review(ham, Action.ALLOW),
        review(dropped, Action.BLOCK),
        review(bare, Action.ALLOW),
        escalated,  # labels nothing
    ]
    posts = group_posts([spam, ham, dropped, bare, unseen])
    found = labelled_posts(posts, labels_from(decisions))
    assert [(post.id, label) for post, label in zip(found.posts, found.labels, strict=True)] == [
        ("s", 1),
        ("h", 0),
    ]
    assert [str(image.url) for image in found.posts[0].images] == ["https://cdn.example/a.png"]
    assert found.posts[0].text == "pills"
    assert found.unlabelled == 1
    assert found.left_out == {INLINE: ["i"], NO_RECORD: ["b"]}


def test_an_active_verdicts_label_comes_before_a_shadow_ones(tmp_path):
    active = compile_text(tmp_path, "words.yaml", POLICY)
    shadow = compile_text(tmp_path, "next/words-next.yaml", SHADOW)
    record = record_of(active, {"id": "p", "text": "pills"}, {})
    mine, theirs = decided(shadow, record), decided(active, record)
    assert mine.shadow and not theirs.shadow
    posts = group_posts([mine, theirs])
    decisions = [review(mine, Action.ALLOW), review(theirs, Action.BLOCK)]
    assert labelled_posts(posts, labels_from(decisions)).labels == [1]
