"""Cut text is never allowed unjudged: a policy says how to treat it, or its `allow` is reviewed.

The decoder cuts a post's text at `posts.max_text_chars` (after removing invisible characters
and collapsing long whitespace runs), so no rule reads what lies past it: an `allow` of such a
post may only mean that the words that would block it were cut. A policy says how to treat cut
text with a rule reading `post.truncated`. One that has none cannot allow a cut post: its
`allow` becomes `review` by the built-in rule `CUT_TEXT_RULE`, listed in the verdict's
`matched_rules` like any rule, so reports count what reviewers decide about it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from contracts.records import Action, MatchedRule
from policies.decision import DEFAULT_PRIORITY, Decision

TRUNCATED_FIELD = "truncated"
CUT_TEXT_RULE = "builtin.cut-text"  # a dot is not allowed in rule ids: no policy rule clashes
CUT_TEXT_QUEUE = "cut-text"
CUT_TEXT_REASON = (
    "The text was longer than posts.max_text_chars and was cut, so rules did not read all of "
    "it, and this policy has no rule reading post.truncated to say how to treat cut text."
)


def reads_truncated(reads: Iterable[tuple[str, ...]]) -> bool:
    """True when some path a condition reads is `post.truncated`."""
    return any(path[:2] == ("post", TRUNCATED_FIELD) for path in reads)


def review_cut_text(
    decision: Decision, *, truncated: bool, policy_reads_truncated: bool, topic: str
) -> Decision:
    """`decision`, or review in CUT_TEXT_QUEUE if it allows cut text its policy never reads."""
    if not truncated or policy_reads_truncated or decision.action is not Action.ALLOW:
        return decision
    rule = MatchedRule(
        id=CUT_TEXT_RULE,
        action=Action.REVIEW,
        queue=CUT_TEXT_QUEUE,
        priority=DEFAULT_PRIORITY,
        reason=CUT_TEXT_REASON,
        evidence={"post.truncated": True},
    )
    return replace(
        decision,
        action=Action.REVIEW,
        queue=CUT_TEXT_QUEUE,
        topic=topic,
        priority=DEFAULT_PRIORITY,
        matched_rules=[*decision.matched_rules, rule],
    )
