"""`links`: what the text links to: how many URLs, through link shorteners, to how many sites.

A small, real producer, and the example of how to write one. Policies switch it on with
`signals: {links: true}` and read `links.count`, `links.shortened` and `links.domains`:

    rules:
      - id: shortened-links
        when: links.shortened > 0 && text.contains("giveaway")
        action: review
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from contracts.producers import (
    Ask,
    Cost,
    Input,
    Placement,
    ProducerDefaults,
    ProducerJob,
    Variable,
)

URL = re.compile(r"(?i)\b(?:https?://|www\.)([a-z0-9.-]+\.[a-z]{2,})")
SHORTENERS = frozenset(
    {"bit.ly", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "buff.ly", "cutt.ly", "rb.gy"}
)
COUNTS = "counts"  # the one request this producer answers


class LinkSignals(ProducerDefaults):
    """`signals.links: true`; conditions read `links.count`, `links.shortened`, `links.domains`."""

    name = "links"
    variables = (Variable("links", "map(string, int)", description="URL counts in the text"),)
    inputs = frozenset({Input.TEXT})
    placement = Placement.CONSUMER
    cost = Cost.TRIVIAL
    version = "1"
    config = bool
    after: tuple[str, ...] = ()

    def asks(self, value: bool) -> list[Ask]:
        """One map of counts, when switched on."""
        return [Ask("links", None, COUNTS)] if value else []

    def compute(self, jobs: Sequence[ProducerJob]) -> list[Mapping[Hashable, Any] | Exception]:
        """The counts for each post's text."""
        return [{COUNTS: link_counts(job.post.text or "")} for job in jobs]


def link_counts(text: str) -> dict[str, int]:
    """URLs in `text`, those through a known shortener, and distinct domains."""
    domains = [match.group(1).lower().removeprefix("www.") for match in URL.finditer(text)]
    shortened = sum(domain in SHORTENERS for domain in domains)
    return {"count": len(domains), "shortened": shortened, "domains": len(set(domains))}
